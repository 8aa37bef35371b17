"""The bench's request counters from Prometheus text as the API server and runctl expose it."""

from __future__ import annotations

from collections import Counter

from bench import metrics

# Trimmed from a kube-apiserver's /metrics: a counter with its comments, a histogram beside it.
APISERVER = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb.
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="batch",resource="jobs",scope="resource",subresource="",verb="POST",version="v1"} 12
apiserver_request_total{code="200",component="apiserver",dry_run="",group="runctl.dev",resource="storyruns",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 5e+02
apiserver_request_total{code="409",component="apiserver",dry_run="",group="runctl.dev",resource="storyruns",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 3
apiserver_request_total{code="0",component="apiserver",dry_run="",group="",resource="",scope="",subresource="/readyz",verb="GET",version=""} 7
# HELP apiserver_request_duration_seconds [STABLE] Response latency distribution.
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_bucket{verb="POST",le="0.005"} 10
apiserver_request_duration_seconds_bucket{verb="POST",le="+Inf"} 12
apiserver_request_duration_seconds_sum{verb="POST"} 0.3
apiserver_request_duration_seconds_count{verb="POST"} 12
"""  # noqa: E501

# As prometheus_client serves runctl's counter: its _total series and a _created one.
OPERATOR = """\
# HELP runctl_api_requests_total API requests made by the operator.
# TYPE runctl_api_requests_total counter
runctl_api_requests_total{outcome="ok",resource="storyruns/status",verb="patch"} 40.0
runctl_api_requests_total{outcome="conflict",resource="storyruns/status",verb="patch"} 2.0
runctl_api_requests_total{outcome="ok",resource="jobs",verb="create"} 5.0
# HELP runctl_api_requests_created API requests made by the operator.
# TYPE runctl_api_requests_created gauge
runctl_api_requests_created{outcome="ok",resource="jobs",verb="create"} 1.7e+09
"""


def test_apiserver_requests_by_verb_resource_subresource() -> None:
    assert metrics.apiserver_requests(APISERVER) == Counter({
        ("POST", "jobs", ""): 12, ("PATCH", "storyruns", "status"): 503,
        ("GET", "", "/readyz"): 7})


def test_operator_requests_by_verb_resource_with_conflicts_apart() -> None:
    assert metrics.operator_requests(OPERATOR) == Counter({
        ("patch", "storyruns/status"): 42, ("create", "jobs"): 5, ("conflicts", ""): 2})

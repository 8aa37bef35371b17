"""Building workloads, checked against what the API server stored for them: every field runctl
sets on a pod, Deployment or Service built from a recorded StepRun is in the recorded object
with the same value (the API server only adds defaults and status)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from runctl.api import wire
from runctl.workloads import build
from tests.recorded import load

NOW = dt.datetime(2026, 11, 25, 21, 41, 25, tzinfo=dt.UTC)


def contained(built: Any, stored: Any, path: str = "") -> list[str]:
    """Where `built` differs from `stored`, ignoring what only `stored` has."""
    if isinstance(built, dict) and isinstance(stored, dict):
        return [d for k, v in built.items()
                for d in contained(v, stored.get(k), f"{path}.{k}")]
    # The API server may append to a list (default tolerations), never reorder it.
    if isinstance(built, list) and isinstance(stored, list) and len(built) <= len(stored):
        return [d for i, (b, s) in enumerate(zip(built, stored[:len(built)], strict=True))
                for d in contained(b, s, f"{path}[{i}]")]
    return [] if built == stored else [f"{path}: built {built!r}, stored {stored!r}"]


def test_a_batch_attempt_s_pod_is_built_as_it_was_stored() -> None:
    sr = load("steprun-ok-extract")
    built = build.build_pod(sr, 1, NOW)
    assert contained(built, load("pod-ok-extract-1")) == []
    assert built["metadata"]["name"] == "ok-extract-1"
    assert built["metadata"]["ownerReferences"][0]["uid"] == sr["metadata"]["uid"]
    container = built["spec"]["containers"][0]
    assert container["name"] == wire.CONTAINER
    assert container["command"] == ["/bin/extract"]
    assert container["env"] == [{"name": "MODE", "value": "full"}]
    assert built["spec"]["restartPolicy"] == "Never"  # runctl retries, classifying failures
    assert built["spec"]["automountServiceAccountToken"] is False


def test_each_attempt_is_its_own_pod_labelled_with_its_number() -> None:
    sr = load("steprun-flaky-fetch")
    for attempt in (1, 2):
        built = build.build_pod(sr, attempt, NOW)
        assert contained(built, load(f"pod-flaky-fetch-{attempt}")) == []
        assert built["metadata"]["labels"][wire.ATTEMPT_LABEL] == str(attempt)


def test_a_pod_s_deadline_is_the_earlier_of_its_timeout_and_the_run_s_deadline() -> None:
    sr = load("steprun-ok-load")
    assert "activeDeadlineSeconds" not in build.build_pod(sr, 1, NOW)["spec"]
    sr["spec"]["timeoutSeconds"] = 600
    sr["spec"]["deadline"] = "2026-11-25T21:43:25Z"  # 120 s after NOW
    assert build.build_pod(sr, 1, NOW)["spec"]["activeDeadlineSeconds"] == 120
    sr["spec"]["timeoutSeconds"] = 30
    assert build.build_pod(sr, 1, NOW)["spec"]["activeDeadlineSeconds"] == 30
    sr["spec"]["deadline"] = "2026-11-25T21:41:00Z"  # already past: at least a second
    assert build.build_pod(sr, 1, NOW)["spec"]["activeDeadlineSeconds"] == 1


def test_a_deployment_and_its_service_are_built_as_they_were_stored() -> None:
    sr = load("steprun-live-hub")
    assert contained(build.build_deployment(sr, 30), load("deployment-live-hub")) == []
    service = build.build_service(sr)
    assert service is not None
    assert contained(service, load("service-live-hub")) == []


def test_a_realtime_step_s_pods_get_the_run_s_shutdown_grace() -> None:
    """A stop scales the Deployment to zero; the ReplicaSet controller then deletes its pods
    with the grace their spec carries, which must be the run's."""
    template = build.build_deployment(load("steprun-live-hub"), 75)["spec"]["template"]
    assert template["spec"]["terminationGracePeriodSeconds"] == 75


def test_no_port_no_service_and_a_named_account_gets_its_token() -> None:
    sr = load("steprun-ok-load")
    assert build.build_service(sr) is None
    sr["spec"]["pod"] = {"serviceAccountName": "loader", "labels": {"team": "data"}}
    pod = build.build_pod(sr, 1, NOW)
    assert pod["spec"]["serviceAccountName"] == "loader"
    assert "automountServiceAccountToken" not in pod["spec"]
    assert pod["metadata"]["labels"]["team"] == "data"
    assert pod["metadata"]["labels"][wire.RUN_LABEL] == "ok"
    template = build.build_deployment(sr, 30)["spec"]["template"]
    assert template["spec"]["serviceAccountName"] == "loader"
    assert template["metadata"]["labels"]["team"] == "data"


def test_a_step_s_node_selector_and_tolerations_reach_its_pods() -> None:
    chosen = {"nodeSelector": {"type": "kwok"},
              "tolerations": [{"key": "example.invalid/dedicated", "operator": "Equal",
                               "value": "etl", "effect": "NoSchedule"}]}
    pod = build.build_pod(load("steprun-placed-work"), 1, NOW)
    stored_pod = load("pod-placed-work-1")
    deployment = build.build_deployment(load("steprun-placed-live-work"), 30)
    stored_deployment = load("deployment-placed-live-work")
    assert contained(pod, stored_pod) == []
    assert contained(deployment, stored_deployment) == []
    for built in (pod["spec"], deployment["spec"]["template"]["spec"]):
        assert {k: built[k] for k in chosen} == chosen
    assert stored_pod["spec"]["nodeName"].startswith("kwok-node-")  # scheduled by them
    unplaced = build.build_pod(load("steprun-ok-load"), 1, NOW)["spec"]
    assert "nodeSelector" not in unplaced
    assert "tolerations" not in unplaced

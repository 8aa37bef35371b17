"""Building workloads, checked against what the API server stored for them: every field runctl
sets on a Job, Deployment or Service built from a recorded StepRun is in the recorded object
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
    if isinstance(built, list) and isinstance(stored, list) and len(built) == len(stored):
        return [d for i, (b, s) in enumerate(zip(built, stored, strict=True))
                for d in contained(b, s, f"{path}[{i}]")]
    return [] if built == stored else [f"{path}: built {built!r}, stored {stored!r}"]


def test_a_job_is_built_as_it_was_stored() -> None:
    built = build.build_job(load("steprun-ok-extract"), 1, NOW)
    assert contained(built, load("job-ok-extract-1")) == []
    container = built["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == wire.CONTAINER
    assert container["command"] == ["/bin/extract"]
    assert container["env"] == [{"name": "MODE", "value": "full"}]
    assert built["spec"]["backoffLimit"] == 0
    assert built["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_each_attempt_is_its_own_job_labelled_with_its_number() -> None:
    sr = load("steprun-flaky-fetch")
    for attempt in (1, 2):
        built = build.build_job(sr, attempt, NOW)
        assert contained(built, load(f"job-flaky-fetch-{attempt}")) == []
        assert built["metadata"]["labels"][wire.ATTEMPT_LABEL] == str(attempt)


def test_a_job_s_deadline_is_the_earlier_of_its_timeout_and_the_run_s_deadline() -> None:
    sr = load("steprun-ok-load")
    sr["spec"]["timeoutSeconds"] = 600
    sr["spec"]["deadline"] = "2026-11-25T21:43:25Z"  # 120 s after NOW
    assert build.build_job(sr, 1, NOW)["spec"]["activeDeadlineSeconds"] == 120
    sr["spec"]["timeoutSeconds"] = 30
    assert build.build_job(sr, 1, NOW)["spec"]["activeDeadlineSeconds"] == 30
    sr["spec"]["deadline"] = "2026-11-25T21:41:00Z"  # already past: at least a second
    assert build.build_job(sr, 1, NOW)["spec"]["activeDeadlineSeconds"] == 1


def test_a_deployment_and_its_service_are_built_as_they_were_stored() -> None:
    sr = load("steprun-live-hub")
    assert contained(build.build_deployment(sr), load("deployment-live-hub")) == []
    service = build.build_service(sr)
    assert service is not None
    assert contained(service, load("service-live-hub")) == []


def test_no_port_no_service_and_a_named_account_gets_its_token() -> None:
    sr = load("steprun-ok-load")
    assert build.build_service(sr) is None
    sr["spec"]["pod"] = {"serviceAccountName": "loader", "labels": {"team": "data"}}
    pod = build.build_job(sr, 1, NOW)["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == "loader"
    assert "automountServiceAccountToken" not in pod["spec"]
    assert pod["metadata"]["labels"]["team"] == "data"
    assert pod["metadata"]["labels"][wire.RUN_LABEL] == "ok"

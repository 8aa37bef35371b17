"""Each invariant of the chaos checker fires on a small history that breaks it, and none fires on
a history that keeps them all: a checker that cannot fail proves nothing."""

from __future__ import annotations

from typing import Any

from chaos.audit import Write
from chaos.checker import Checker, Limits, Seen, Violation, counts

NS = "ns"
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def iso(at: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(at: float, phase: str | None, states: dict[str, Any] | None = None, *,
        steps: tuple[str, ...] = ("a",), finally_: tuple[str, ...] = (),
        stop: float | None = None, skip: bool = False, type_: str = "MODIFIED") -> Seen:
    status: dict[str, Any] = {}
    if phase:
        status["phase"] = phase
    if states is not None:
        status["stepStates"] = states
    if stop is not None:
        status["stop"] = {"observedAt": iso(stop)}
    spec: dict[str, Any] = {"steps": [{"name": s} for s in steps],
                            "finally": [{"name": s} for s in finally_]}
    if skip:
        spec["shutdown"] = {"finally": "Skip"}
    return Seen(at, "StoryRun", type_, {"metadata": {"name": "r", "namespace": NS, "uid": "u-r"},
                                        "spec": spec, "status": status})


def child(at: float, kind: str, name: str, step: str, uid: str = "", *,
          phase: str | None = None, attempt: str | None = None, type_: str = "ADDED",
          deleting: bool = False) -> Seen:
    labels = {"runctl.dev/storyrun": "r", "runctl.dev/step": step}
    if attempt:
        labels["runctl.dev/attempt"] = attempt
    meta: dict[str, Any] = {"name": name, "namespace": NS, "uid": uid or f"u-{name}",
                            "labels": labels}
    if deleting:
        meta["deletionTimestamp"] = iso(at)
    return Seen(at, kind, type_, {"metadata": meta, "status": {"phase": phase} if phase else {}})


def created(at: float, resource: str, name: str) -> Write:
    return Write(at, at + 0.01, "runctl-operator/a", "create", resource, "", NS, name, 201)


def done(phase: str = "Succeeded", **extra: Any) -> dict[str, Any]:
    return {"phase": phase, "reason": "Completed", "finishedAt": iso(T0 + 5), **extra}


def clean() -> tuple[list[Seen], list[Write]]:
    seen = [
        run(T0, None),
        run(T0 + 1, "Running", {"a": {"phase": "Running"}}),
        child(T0 + 1, "StepRun", "r-a", "a"),
        child(T0 + 1, "Pod", "r-a-1", "a", attempt="1", phase="Pending"),
        child(T0 + 4, "Pod", "r-a-1", "a", attempt="1", phase="Succeeded", type_="MODIFIED"),
        child(T0 + 5, "StepRun", "r-a", "a", phase="Succeeded", type_="MODIFIED"),
        run(T0 + 5, "Succeeded", {"a": done()}),
        run(T0 + 6, "Succeeded", {"a": done()}),
    ]
    return seen, [created(T0 + 1, "stepruns", "r-a"), created(T0 + 1, "pods", "r-a-1")]


def check(seen: list[Seen], writes: list[Write] | None = None, end: float = T0 + 100,
          **limits: Any) -> list[Violation]:
    return Checker(seen, writes or [], limits=Limits(**limits)).check(end)


def invariants(found: list[Violation]) -> set[str]:
    return {v.invariant for v in found}


def test_a_clean_history_has_no_violation() -> None:
    seen, writes = clean()
    assert check(seen, writes) == []
    assert set(counts([]).values()) == {0}


def test_a_terminal_run_that_changes_breaks_terminal_final() -> None:
    seen, _ = clean()
    seen.append(run(T0 + 7, "Failed", {"a": done()}))
    assert invariants(check(seen)) == {"terminal-final"}


def test_a_terminal_step_entry_that_changes_breaks_terminal_final() -> None:
    seen, _ = clean()
    seen.append(run(T0 + 7, "Succeeded", {"a": done(message="again")}))
    assert invariants(check(seen)) == {"terminal-final"}


def test_a_terminal_steprun_that_changes_breaks_terminal_final() -> None:
    seen, _ = clean()
    seen.append(child(T0 + 7, "StepRun", "r-a", "a", phase="Lost", type_="MODIFIED"))
    assert invariants(check(seen)) == {"terminal-final"}


def test_a_terminal_run_missing_a_step_entry_breaks_complete() -> None:
    seen, _ = clean()
    seen.append(run(T0 + 8, "Succeeded", {"a": done()}, finally_=("cleanup",)))
    assert invariants(check(seen)) == {"complete"}


def test_a_main_step_created_after_the_stop_breaks_nothing_after_stop() -> None:
    seen = [run(T0, "Stopping", {}, steps=("a", "b"), stop=T0 + 2),
            child(T0 + 4, "StepRun", "r-b", "b")]
    found = check(seen, [created(T0 + 4, "stepruns", "r-b")])
    assert invariants(found) == {"nothing-after-stop"}


def test_a_deployment_after_the_stop_counts_and_a_replicaset_pod_does_not() -> None:
    seen = [run(T0, "Stopping", {}, steps=("a",), stop=T0 + 2),
            child(T0 + 5, "Pod", "r-a-5d8f-x", "a"), child(T0 + 6, "Deployment", "r-a", "a")]
    found = check(seen, [created(T0 + 5, "pods", "r-a-5d8f-x"),
                         created(T0 + 6, "deployments", "r-a")])
    assert [v.detail.split(" (")[0] for v in found] == ["Deployment r-a"]


def test_a_create_within_the_records_second_is_not_counted_after_the_stop() -> None:
    seen = [run(T0, "Stopping", {}, steps=("a", "b"), stop=T0 + 2),
            child(T0 + 2.9, "StepRun", "r-b", "b")]
    assert check(seen, [created(T0 + 2.9, "stepruns", "r-b")]) == []


def test_a_finally_step_may_start_after_a_stop_unless_skipped() -> None:
    def history(skip: bool) -> list[Seen]:
        return [run(T0, "Stopping", {}, finally_=("f",), stop=T0 + 2, skip=skip),
                child(T0 + 6, "Pod", "r-f-1", "f", attempt="1")]
    writes = [created(T0 + 6, "pods", "r-f-1")]
    assert check(history(skip=False), writes) == []
    assert invariants(check(history(skip=True), writes)) == {"nothing-after-stop"}


def test_a_second_steprun_for_a_step_breaks_one_steprun_per_step() -> None:
    seen, _ = clean()
    seen.append(child(T0 + 2, "StepRun", "r-a", "a", uid="another"))
    assert invariants(check(seen)) == {"one-steprun-per-step"}


def test_a_second_pod_for_an_attempt_breaks_one_pod_per_attempt() -> None:
    seen, _ = clean()
    seen.append(child(T0 + 2, "Pod", "r-a-1", "a", uid="another", attempt="1",
                      phase="Succeeded"))
    assert invariants(check(seen)) == {"one-pod-per-attempt"}


def test_a_run_never_terminal_past_its_bound_and_the_allowance_is_stuck() -> None:
    seen = [run(T0, "Running", {"a": {"phase": "Running"}})]
    assert check(seen, end=T0 + 50, bounds={(NS, "r"): 60}) == []
    assert invariants(check(seen, end=T0 + 70, bounds={(NS, "r"): 60})) == {"not-stuck"}
    # a fault late in the run moves its bound to the allowance after the fault
    assert check(seen, end=T0 + 70, bounds={(NS, "r"): 60}, last_fault=T0 + 40,
                 allowance=60) == []


def test_a_run_that_ended_late_is_stuck_too() -> None:
    seen, _ = clean()
    assert invariants(check(seen, bounds={(NS, "r"): 3})) == {"not-stuck"}


def test_a_pod_live_after_its_run_ended_and_the_grace_breaks_no_live_workload() -> None:
    seen, _ = clean()
    seen.append(child(T0 + 2, "Pod", "r-a-2", "a", attempt="2", phase="Running"))
    assert check(seen, end=T0 + 20, grace=30) == []
    assert invariants(check(seen, end=T0 + 60, grace=30)) == {"no-live-workload-after-end"}
    seen.append(child(T0 + 20, "Pod", "r-a-2", "a", attempt="2", phase="Running",
                      type_="MODIFIED", deleting=True))
    assert check(seen, end=T0 + 60, grace=30) == []


def test_a_pod_made_after_its_deployment_was_deleted_is_counted_apart() -> None:
    seen, _ = clean()
    seen += [child(T0 + 2, "Deployment", "r-a", "a"),
             child(T0 + 4, "Deployment", "r-a", "a", type_="DELETED"),
             child(T0 + 3, "Pod", "r-a-5d-early", "a", phase="Running"),
             child(T0 + 9, "Pod", "r-a-5d-late", "a", phase="Running")]
    checker = Checker(seen, limits=Limits(grace=30))
    assert [v.detail.split()[1] for v in checker.check(T0 + 60)] == ["r-a-5d-early"]
    assert [v.detail.split()[1] for v in checker.orphans(T0 + 60)] == ["r-a-5d-late"]


def test_a_deployment_left_after_its_run_ended_breaks_no_live_workload() -> None:
    seen, _ = clean()
    seen.append(child(T0 + 2, "Deployment", "r-hub", "a"))
    assert invariants(check(seen, end=T0 + 60, grace=30)) == {"no-live-workload-after-end"}
    seen.append(child(T0 + 30, "Deployment", "r-hub", "a", type_="DELETED"))
    assert check(seen, end=T0 + 60, grace=30) == []


def test_an_unfenced_write_is_reported() -> None:
    seen, _ = clean()
    lease = Write(T0, T0, "runctl-operator/a", "update", "leases", "", NS, "runctl-leader", 200,
                  holder="a", lease_seconds=15)
    late = Write(T0 + 20, T0 + 20, "runctl-operator/a", "patch", "stepruns", "", NS, "r-a", 200)
    found = Checker(seen, [lease, late], lease=(NS, "runctl-leader")).check(T0 + 100)
    assert invariants(found) == {"fenced"}

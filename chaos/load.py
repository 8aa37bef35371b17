"""The mixed load: runs of every kind runctl has, each with what it should end as and how long
it may take.

Kinds, in turn (so any size gets a mix, and 11 or more runs get every kind):

- `dag`: a diamond of batch steps that succeeds;
- `fail-stop` and `fail-continue`: a step fails, under `onFailure: stop` and `continue`;
- `retry`: a step fails transiently (exit 75) on its first attempt and succeeds on a retry;
- `step-timeout` and `run-timeout`: a step past its own `timeoutSeconds`, a run past its own;
- `finally`: main steps then finally steps (one reads the outcome);
- `stop-drain`: a batch run stopped mid-step in `Drain` mode, finally steps skipped;
- `realtime-stop`: a realtime topology stopped by `cancelRequested` (`Cancel` mode);
- `realtime-hub`: a realtime topology ended by the hub's `TopologyTerminated` condition;
- `story`: a run of a Story with params, outputs, references and a `when` condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runctl.api.wire import API_VERSION

STORY = "chaos-etl"


@dataclass(frozen=True)
class LoadRun:
    name: str
    kind: str
    body: dict[str, Any]
    bound: float
    """Seconds after its creation by which the run must be terminal, faults aside."""
    act: str = ""
    """What the harness does to it once it runs: `stop` (cancelRequested) or `hub` (the
    TopologyTerminated condition); empty: nothing."""
    act_after: float = 0.0


def _step(name: str, *needs: str, duration: str = "2s", **fields: Any) -> dict[str, Any]:
    annotations = {"sim.runctl.dev/duration": duration, **fields.pop("annotations", {})}
    return {"name": name, "needs": list(needs), "image": f"example.invalid/{name}:1",
            "pod": {"annotations": annotations}, **fields}


def _run(name: str, steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "StoryRun",
            "metadata": {"name": name, "labels": {"chaos.runctl.dev/load": "1"}},
            "spec": {**spec, "steps": steps}}


def _fails(code: int, attempts: int | None = None) -> dict[str, str]:
    found = {"sim.runctl.dev/exit-code": str(code)}
    if attempts is not None:
        found["sim.runctl.dev/fail-attempts"] = str(attempts)
    return found


def story() -> dict[str, Any]:
    """The Story the `story` runs run: a count whose output the next steps read, a publish
    step that runs only when the params allow it."""
    return {
        "apiVersion": API_VERSION, "kind": "Story", "metadata": {"name": STORY},
        "spec": {
            "params": [{"name": "table", "type": "string"},
                       {"name": "dryRun", "type": "boolean", "default": False}],
            "steps": [
                _step("count", args=["${{ params.table }}"], outputs=[{"name": "rows"}],
                      annotations={"sim.runctl.dev/message": '{"rows": "12"}'}),
                _step("load", "count", args=["${{ steps.count.outputs.rows }}"]),
                _step("publish", "load", duration="1s",
                      when="params.dryRun == false && int(steps.count.outputs.rows) > 0"),
            ],
        },
    }


def _make(kind: str, name: str) -> LoadRun:
    if kind == "dag":
        return LoadRun(name, kind, _run(name, [
            _step("a"), _step("b", "a"), _step("c", "a"), _step("d", "b", "c")]), 120)
    if kind == "fail-stop":
        return LoadRun(name, kind, _run(name, [
            _step("a"), _step("b", "a", annotations=_fails(1)), _step("c", "a", duration="20s"),
            _step("d", "b", "c")], onFailure="stop"), 120)
    if kind == "fail-continue":
        return LoadRun(name, kind, _run(name, [
            _step("a"), _step("b", "a", annotations=_fails(1)), _step("c", "a"),
            _step("d", "b"), _step("e", "c")], onFailure="continue"), 120)
    if kind == "retry":
        return LoadRun(name, kind, _run(name, [
            _step("fetch", annotations=_fails(75, attempts=1),
                  retry={"limit": 2, "backoffSeconds": 1, "transientExitCodes": [75]}),
            _step("use", "fetch")]), 120)
    if kind == "step-timeout":
        return LoadRun(name, kind, _run(name, [
            _step("slow", duration="120s", timeoutSeconds=4), _step("after", "slow")]), 90)
    if kind == "run-timeout":
        return LoadRun(name, kind, _run(name, [
            _step("a"), _step("slow", "a", duration="120s")], timeoutSeconds=8), 90)
    if kind == "finally":
        return LoadRun(name, kind, _run(name, [_step("a"), _step("b", "a")], **{"finally": [
            _step("report", env=[{"name": "OUTCOME", "value": "${{ run.outcome }}"}]),
            _step("unlock", "report", duration="1s")]}), 120)
    if kind == "stop-drain":
        return LoadRun(name, kind, _run(name, [
            _step("long", duration="120s"), _step("next", "long")],
            shutdown={"mode": "Drain", "gracePeriodSeconds": 10, "finally": "Skip"},
            **{"finally": [_step("cleanup")]}), 120, act="stop", act_after=6)
    if kind == "realtime-stop":
        return LoadRun(name, kind, _run(name, [
            _step("ingress", duration="forever", port=8080),
            _step("agent", "ingress", duration="forever")],
            mode="realtime", shutdown={"gracePeriodSeconds": 15}), 120, act="stop",
            act_after=20)
    if kind == "realtime-hub":
        return LoadRun(name, kind, _run(name, [
            _step("room", duration="forever"), _step("bot", "room", duration="forever")],
            mode="realtime", shutdown={"gracePeriodSeconds": 15}), 120, act="hub",
            act_after=20)
    if kind == "story":
        body = _run(name, [], storyRef={"name": STORY},
                    params={"table": f"t{name[-2:]}", "dryRun": name.endswith(("0", "5"))})
        del body["spec"]["steps"]
        return LoadRun(name, kind, body, 120)
    raise ValueError(f"unknown kind {kind}")


KINDS = ("dag", "fail-stop", "fail-continue", "retry", "step-timeout", "run-timeout", "finally",
         "stop-drain", "realtime-stop", "realtime-hub", "story")


def load(size: int) -> list[LoadRun]:
    """`size` runs, the kinds in turn."""
    return [_make(KINDS[i % len(KINDS)], f"{KINDS[i % len(KINDS)]}-{i:03d}")
            for i in range(size)]

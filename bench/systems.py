"""What the bench needs to know of a workflow system to run the same cases on it: runctl here,
Argo Workflows and Tekton Pipelines in `bench.peers`.

Each system gets the same diamond (five steps of simulated pods that end at once) and the same
stop case (a run whose one step runs until stopped), so runs per minute, controller CPU, writes
per run and stop latency compare like for like.
"""

from __future__ import annotations

from typing import Any, Protocol

from bench.harness import GROUP, STORYRUNS, TERMINAL, VERSION, Bench, Kind
from runctl.api.wire import RUN_LABEL, STEP_RUNS
from runctl.machine.phases import STEP_TERMINAL

# The diamond every system runs: each step with the steps it needs.
SHAPE: list[tuple[str, tuple[str, ...]]] = [
    ("extract", ()), ("clean", ("extract",)), ("enrich", ("extract",)),
    ("join", ("clean", "enrich")), ("publish", ("join",)),
]
DURATION = "1ms"  # how long each simulated step's pod runs (sim.runctl.dev/duration)
FOREVER = "forever"  # a step that runs until it is stopped


class System(Protocol):
    """One workflow system, running, as the scenarios see it."""

    label: str  # the system and its settings, as the figures name it
    kind: Kind  # the custom resource a run is
    run_label: str  # the label on a pod that names its run
    stop_patch: dict[str, Any]  # the merge patch that asks a run to stop

    def diamond(self, name: str) -> dict[str, Any]: ...
    def long_run(self, name: str) -> dict[str, Any]: ...
    def started(self, run: dict[str, Any]) -> bool: ...
    def terminal(self, run: dict[str, Any]) -> bool: ...
    def cpu_seconds(self) -> float: ...


def step(name: str, *needs: str, duration: str) -> dict[str, Any]:
    return {"name": name, "needs": list(needs), "image": f"example.invalid/{name}:1",
            "pod": {"annotations": {"sim.runctl.dev/duration": duration}}}


def run_body(name: str, steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StoryRun",
            "metadata": {"name": name}, "spec": {**spec, "steps": steps}}


DIAMOND = [step(name, *needs, duration=DURATION) for name, needs in SHAPE]


class Runctl:
    """runctl's operator as the bench started it, with its defaults."""

    label = "runctl, defaults"
    kind = STORYRUNS
    run_label = RUN_LABEL
    item_kind = Kind(GROUP, VERSION, STEP_RUNS)
    stop_patch: dict[str, Any] = {"spec": {"cancelRequested": True}}

    def __init__(self, b: Bench) -> None:
        self.b = b

    def diamond(self, name: str) -> dict[str, Any]:
        return run_body(name, DIAMOND)

    def long_run(self, name: str) -> dict[str, Any]:
        """A realtime run with `drainTimeoutSeconds: 120` (which must play no part) whose pods
        are still live, so the stop also has to take the topology down."""
        return run_body(name, [step("hub", duration=FOREVER)], mode="realtime",
                        transport={"lifecycle": {"drainTimeoutSeconds": 120}})

    @staticmethod
    def fanout(name: str, items: int, parallelism: int, duration: str) -> dict[str, Any]:
        """One step over `items` items, `parallelism` at once, each a pod of `duration`."""
        return run_body(name, [{**step("item", duration=duration), "args": ["${{ item }}"],
                                "forEach": {"items": list(range(items)),
                                            "parallelism": parallelism}}])

    @staticmethod
    def items(steprun: dict[str, Any]) -> dict[str, bool]:
        phase = (steprun.get("status") or {}).get("phase")
        return {steprun["metadata"]["name"]: phase in STEP_TERMINAL}

    @staticmethod
    def phase(run: dict[str, Any]) -> str:
        return str((run.get("status") or {}).get("phase", ""))

    def started(self, run: dict[str, Any]) -> bool:
        states = (run.get("status") or {}).get("stepStates") or {}
        return bool(states) and all(s.get("phase") == "Running" for s in states.values())

    def terminal(self, run: dict[str, Any]) -> bool:
        return (run.get("status") or {}).get("phase") in TERMINAL

    def cpu_seconds(self) -> float:
        return self.b.cpu_seconds()

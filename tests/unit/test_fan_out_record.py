"""The record of a run of 10,000 items keeps one size: the whole StoryRun, as the API stores
it, stays below 256 KiB at every status write, however many items fail and with what words."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from runctl.api.wire import run_status
from runctl.machine import model as m
from runctl.machine.actions import CreateStepRun, WriteStepRunStatus
from runctl.machine.decide import decide
from runctl.machine.phases import RUN_TERMINAL, OnFailure, StepPhase
from tests.unit.builders import at, observed, spec, step, work

W = m.WorkloadState
ITEMS = 10_000
LIMIT = 256 * 1024
WORDS = "x" * 1000


def storyrun(status: m.RunStatus) -> dict[str, Any]:
    """The StoryRun as stored: a 100 x 100 matrix over two dimensions, and its status."""
    dims = {"a": list(range(100)), "b": list(range(100))}
    return {"apiVersion": "runctl.dev/v1alpha1", "kind": "StoryRun",
            "metadata": {"name": "r", "namespace": "n", "uid": "u" * 36},
            "spec": {"onFailure": "continue", "steps": [{
                "name": "f", "image": "example.invalid/f:1", "args": ["${{ item.a }}"],
                "forEach": {"matrix": dims, "parallelism": 500}}]},
            "status": run_status(status)}


def test_a_run_of_ten_thousand_items_stays_below_256_kib_at_every_write() -> None:
    run_spec = spec(step("f", for_each=m.ForEach(500)), on_failure=OnFailure.CONTINUE)
    gates = (("f", m.Gate(True, items=ITEMS)),)
    runs: dict[str, m.StepRunObservation] = {}
    status, now, largest, writes = m.RunStatus(), 0, 0, 0
    while status.phase not in RUN_TERMINAL:
        d = decide(observed(run_spec, status, runs, gates=gates), at(now))
        for a in d.actions:
            if isinstance(a, CreateStepRun):
                runs[a.step] = m.StepRunObservation(a.name, None, attempt=work(W.RUNNING),
                                                    created_at=at(now))
            elif isinstance(a, WriteStepRunStatus):
                runs[a.step] = replace(runs[a.step], status=a.status)
        status = d.status
        writes += 1
        largest = max(largest, len(json.dumps(storyrun(status)).encode()))
        now += 1
        for key, obs in runs.items():  # what ran a second ends: one in seven fails, wordily
            if obs.attempt is not None and obs.attempt.state is W.RUNNING:
                index = int(key[2:-1])
                ended = (work(W.FAILED, exit_code=1, message=WORDS) if index % 7 == 3
                         else work(W.SUCCEEDED))
                runs[key] = replace(obs, attempt=ended)
    state = m.step_state(status, "f")
    assert state is not None
    assert state.items is not None
    assert state.items.total == ITEMS
    assert dict(state.items.by_phase) == {StepPhase.SUCCEEDED: 8571, StepPhase.FAILED: 1429}
    assert writes > ITEMS // 500
    print(f"largest StoryRun: {largest} bytes over {writes} writes")
    assert largest < LIMIT, f"the StoryRun took {largest} bytes"

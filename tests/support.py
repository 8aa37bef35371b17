"""Helpers for integration tests: read objects as JSON, wait for what a user would wait for."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from runctl.devcluster import ControlPlane, ports


def kubectl_json(cluster: ControlPlane, *args: str) -> dict[str, Any]:
    out = cluster.kubectl(*args, "-o", "json")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def wait_for(what: str, probe, timeout: float = 60, interval: float = 0.2):
    """Poll `probe` until it returns a truthy value; fail naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except subprocess.CalledProcessError as exc:
            last = exc.stderr  # not there yet: said if it never comes, never taken for success
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def free_port() -> int:
    """A loopback port free right now (for an operator's webhook)."""
    return ports.free_port()


TERMINAL = {"Succeeded", "Failed", "Canceled", "TimedOut"}
STEP_TERMINAL = TERMINAL | {"Lost", "Skipped"}


def storyrun(name: str, steps: list[dict[str, Any]], **spec: object) -> dict[str, Any]:
    """A StoryRun manifest; `steps` as in API.md, other spec fields as keyword arguments."""
    return {"apiVersion": "runctl.dev/v1alpha1", "kind": "StoryRun",
            "metadata": {"name": name}, "spec": {**spec, "steps": steps}}


def step(name: str, *needs: str, duration: str = "1s", exit_code: int | None = None,
         message: str | None = None, **fields: object) -> dict[str, Any]:
    """A step whose simulated pod runs `duration` and exits with `exit_code`."""
    annotations = {"sim.runctl.dev/duration": duration}
    if exit_code is not None:
        annotations["sim.runctl.dev/exit-code"] = str(exit_code)
    if message is not None:
        annotations["sim.runctl.dev/message"] = message
    extra = fields.pop("annotations", None)
    if isinstance(extra, dict):
        annotations.update(extra)
    return {"name": name, "needs": list(needs), "image": f"example.invalid/{name}:1",
            "pod": {"annotations": annotations}, **fields}


def apply(cluster: ControlPlane, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def get_run(cluster: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return kubectl_json(cluster, "get", "storyrun", name, "-n", namespace)


def wait_terminal(cluster: ControlPlane, namespace: str, name: str,
                  timeout: float = 90) -> dict[str, Any]:
    """Wait until the run's phase is terminal; return the whole StoryRun."""
    def probe() -> dict[str, Any] | None:
        run = get_run(cluster, namespace, name)
        return run if run.get("status", {}).get("phase") in TERMINAL else None
    result: dict[str, Any] = wait_for(f"StoryRun {name} to finish", probe, timeout=timeout)
    return result


def wait_phase(cluster: ControlPlane, namespace: str, name: str, phases: set[str],
               timeout: float = 60) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        run = get_run(cluster, namespace, name)
        return run if run.get("status", {}).get("phase") in phases else None
    result: dict[str, Any] = wait_for(f"StoryRun {name} to be {phases}", probe, timeout=timeout)
    return result


def items(cluster: ControlPlane, namespace: str, kind: str,
          selector: str | None = None) -> list[dict[str, Any]]:
    args = ["get", kind, "-n", namespace]
    if selector:
        args += ["-l", selector]
    found: list[dict[str, Any]] = kubectl_json(cluster, *args)["items"]
    return found


def step_states(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The run's stepStates; empty before the operator first wrote a status."""
    states: dict[str, dict[str, Any]] = (run.get("status") or {}).get("stepStates") or {}
    return states


def events(cluster: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    """Events about one object, oldest first."""
    found = items(cluster, namespace, "events")
    mine = [e for e in found if e["involvedObject"]["name"] == name]
    return sorted(mine, key=lambda e: e.get("lastTimestamp") or "")

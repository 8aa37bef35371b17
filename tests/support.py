"""Helpers for integration tests: read objects as JSON, wait for what a user would wait for."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from runctl.devcluster import ControlPlane


def kubectl_json(cluster: ControlPlane, *args: str) -> dict:  # type: ignore[type-arg]
    out = cluster.kubectl(*args, "-o", "json")
    result: dict = json.loads(out.stdout)  # type: ignore[type-arg]
    return result


def wait_for(what: str, probe, timeout: float = 60, interval: float = 0.2):  # type: ignore[no-untyped-def]
    """Poll `probe` until it returns a truthy value; fail naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except subprocess.CalledProcessError as exc:
            last = exc.stderr
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {last!r}")

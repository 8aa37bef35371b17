"""Hostile input, measured: fuzzed StoryRuns sent to the real API server, with the operator and
its admission webhook running, each followed to where it ends.

Every object is either refused at apply (the refusal must name a field, and never be a server
error), or accepted and then run by the operator to a terminal phase (InvalidSpec counted apart)
within its deadline plus BOUND_SLACK seconds. The operator must not crash. `make test` sends a
hundred objects; `make fuzz` sends FUZZ_OBJECTS (5,000) and writes the figures to
FUZZ_RESULTS.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from runctl.devcluster import ControlPlane
from tests.conftest import OperatorProcess
from tests.fuzz.inputs import DEADLINE, hostile_runs
from tests.fuzz.tally import MUST_BE_ZERO, Tally, markdown
from tests.support import TERMINAL, storyrun, wait_for
from tests.support import step as sim_step

pytestmark = pytest.mark.integration

OBJECTS = int(os.environ.get("FUZZ_OBJECTS", "100"))
RESULTS = os.environ.get("FUZZ_RESULTS")
BOUND_SLACK = 60
"""Seconds past its deadline an accepted run may take to be recorded terminal."""
IN_FLIGHT = 25
"""Accepted runs followed at once; sending waits while this many are still going."""
GROUP, VERSION, PLURAL = "runctl.dev", "v1alpha1", "storyruns"


class Follower:
    """Accepted runs, followed to their end: counted when terminal (then deleted, so the
    cluster stays small), or as not terminal once past their bound."""

    def __init__(self, api: client.CustomObjectsApi, namespace: str, tally: Tally,
                 operator: OperatorProcess) -> None:
        self.api, self.namespace, self.tally, self.operator = api, namespace, tally, operator
        self.bounds: dict[str, float] = {}

    def accepted(self, name: str, deadline: int) -> None:
        self.bounds[name] = time.monotonic() + deadline + BOUND_SLACK

    def poll(self) -> None:
        runs = self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        status = {r["metadata"]["name"]: r.get("status") or {} for r in runs["items"]}
        for name, bound in list(self.bounds.items()):
            phase = status.get(name, {}).get("phase")
            if phase in TERMINAL:
                invalid = status[name].get("reason") == "InvalidSpec"
                self.tally.add("accepted, refused by the operator (InvalidSpec)" if invalid
                               else "accepted, terminal")
                self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                         PLURAL, name)
                del self.bounds[name]
            elif time.monotonic() > bound:
                self.tally.add("not terminal within its bound", f"{name}: {status.get(name)}")
                del self.bounds[name]
        if self.operator.proc and self.operator.proc.poll() is not None:
            self.tally.add("operator crashed", self.operator.log.read_text()[-500:])
            self.operator.start()

    def wait(self, at_most: int) -> None:
        while len(self.bounds) > at_most:
            time.sleep(0.5)
            self.poll()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_hostile_storyruns_never_hurt_the_api_server_or_the_operator(
        crds: ControlPlane, namespace: str, tmp_path: Path) -> None:
    op = OperatorProcess(crds, crds.logs, label=f"fuzz-{namespace}", extra=(
        "-n", namespace, "--webhook-port", str(_free_port()), "--webhook-host", "127.0.0.1",
        "--webhook-cert-dir", str(tmp_path)))
    op.start()
    api = client.CustomObjectsApi(crds.api_client())
    tally = Tally()
    follower = Follower(api, namespace, tally, op)
    cycle = storyrun("cycle", [sim_step("a", "b"), sim_step("b", "c"), sim_step("c", "a")])

    def webhook_serves() -> bool:
        try:
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, cycle,
                                                dry_run="All")
        except ApiException as exc:
            return "cycle" in (exc.body or "")
        return False

    started = time.monotonic()
    try:
        wait_for("the webhook to serve", webhook_serves, timeout=60)

        @settings(max_examples=OBJECTS, deadline=None, database=None, derandomize=False,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(hostile_runs())
        def send(obj: dict[str, Any]) -> None:
            tally.add("tried")
            if obj["metadata"].get("name") == "x":
                obj["metadata"]["name"] = f"f{tally.counts['tried']:05d}"
            try:
                api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, obj)
            except ApiException as exc:
                tally.refused(exc.status or 0, exc.body or str(exc))
            else:
                follower.accepted(obj["metadata"]["name"], obj["spec"]["timeoutSeconds"])
            if tally.counts["tried"] % 10 == 0:
                follower.poll()
            follower.wait(IN_FLIGHT)

        send()
        follower.wait(0)
    finally:
        op.stop()
        crds.kubectl("delete", "validatingwebhookconfiguration", "runctl.dev",
                     "--ignore-not-found", check=False)
    elapsed = time.monotonic() - started
    if RESULTS:
        heading = (f"# Fuzzing results\n\n{tally.counts['tried']} objects in {elapsed:.0f} s "
                   f"on {os.cpu_count()} cores, Python {platform.python_version()}, the local "
                   f"control plane (`make fuzz`; each accepted run's deadline at most "
                   f"{DEADLINE} s, bound {DEADLINE + BOUND_SLACK} s).")
        Path(RESULTS).write_text(markdown(tally, heading))
    print(json.dumps(dict(tally.counts), indent=1))
    bad = {k: tally.examples.get(k, []) for k in MUST_BE_ZERO if tally.counts.get(k)}
    assert not bad, json.dumps(bad, indent=1)
    assert tally.counts["refused at apply, field named"] > 0
    assert tally.counts["accepted, terminal"] > 0

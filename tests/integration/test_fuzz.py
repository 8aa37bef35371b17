"""Hostile input, measured: fuzzed StoryRuns and Stories sent to the real API server, with the
operator and its admission webhook running, each followed to where it ends.

Every object is either refused at apply (the refusal must name a field, and never be a server
error), or accepted and then run by the operator to a terminal phase (InvalidSpec counted apart)
within its deadline plus BOUND_SLACK seconds; an accepted Story is run by the StoryRun sent
after it. The operator must not crash. `make test` sends about a hundred objects; `make fuzz`
sends FUZZ_OBJECTS (5,000) and writes the figures to FUZZ_RESULTS.

The objects are drawn from a fixed seed (FUZZ_SEED), so a run sends the same objects every time;
SENDERS threads send them, so the API server and the operator see concurrent writers as they do
on a shared cluster, and 5,000 objects take minutes rather than an hour.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from runctl.devcluster import ControlPlane
from runctl.timefmt import parse_time
from tests.conftest import OperatorProcess
from tests.fuzz.inputs import DEADLINE, hostile_runs, hostile_stories
from tests.fuzz.tally import MUST_BE_ZERO, Tally, markdown, names_a_field
from tests.support import TERMINAL, free_port, storyrun, wait_for
from tests.support import step as sim_step

pytestmark = pytest.mark.integration

OBJECTS = int(os.environ.get("FUZZ_OBJECTS", "100"))
RESULTS = os.environ.get("FUZZ_RESULTS")
SEED = int(os.environ.get("FUZZ_SEED", "20261126"))
SENDERS = int(os.environ.get("FUZZ_SENDERS", "6"))
"""Threads sending at once; generation stays in one thread, in the seed's order."""
BOUND_SLACK = 60
"""Seconds past its deadline an accepted run may take to be recorded terminal."""
LAST_CHANCE = 180
"""Seconds a run past its bound is still followed once everything is sent: ended by then, it
was late; not, it is stuck."""
IN_FLIGHT = 40
"""Accepted runs followed at once; sending waits while this many are still going."""
MAX_HEADERS = 10_000
"""The API server answers with one Warning header for every unknown field it drops (a run of
100 steps, each with one, gets more than 100 headers); Python's http.client refuses an answer
of more than 100 header lines (http.client._MAXHEADERS) and the request then fails without an
answer. The fuzzer raises that limit so it reads every answer the API server gives."""
GROUP, VERSION = "runctl.dev", "v1alpha1"
PLURALS = {"StoryRun": "storyruns", "Story": "stories"}


class Follower:
    """Accepted runs, followed to their end: counted when terminal (then deleted with the
    Story sent with them, so the cluster stays small) and judged late or not by their own
    record (creation to recorded end), so a slow poll never makes a run late; one past its
    bound still going is followed on to tell a late run from a stuck one. Senders add runs from
    their threads; one thread polls."""

    def __init__(self, api: client.CustomObjectsApi, namespace: str, tally: Tally,
                 operator: OperatorProcess) -> None:
        self.api, self.namespace, self.tally, self.operator = api, namespace, tally, operator
        self.bounds: dict[str, tuple[float, str | None]] = {}
        self.deadlines: dict[str, int] = {}
        self.overdue: dict[str, tuple[float, str | None]] = {}
        self.lock = threading.Lock()
        self.latest = -float(BOUND_SLACK)
        """The most seconds past its deadline a run was recorded terminal."""
        self.slowest = ""

    def accepted(self, name: str, deadline: int, story: str | None = None) -> None:
        with self.lock:
            self.bounds[name] = (time.monotonic() + deadline + BOUND_SLACK, story)
            self.deadlines[name] = deadline

    def going(self) -> int:
        with self.lock:
            return len(self.bounds)

    def poll(self) -> None:
        listed_at = time.monotonic()
        runs = self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                      "storyruns")
        by_name = {r["metadata"]["name"]: r for r in runs["items"]}
        status = {name: r.get("status") or {} for name, r in by_name.items()}
        with self.lock:
            followed = list(self.bounds.items())
        for name, (bound, story) in followed:
            phase = status.get(name, {}).get("phase")
            if phase in TERMINAL:
                invalid = status[name].get("reason") == "InvalidSpec"
                self.tally.add("accepted, refused by the operator (InvalidSpec)" if invalid
                               else "accepted, terminal")
                if self.ended(name, by_name[name], listed_at, bound):
                    self.tally.add("of those, terminal later")
                self.forget(name, story)
            elif listed_at > bound:
                self.overdue[name] = (bound, story)  # judged when it ends, or found stuck
            else:
                continue
            with self.lock:
                del self.bounds[name]
        for name, (bound, story) in list(self.overdue.items()):
            if status.get(name, {}).get("phase") in TERMINAL:
                if self.ended(name, by_name[name], listed_at, bound):
                    self.tally.add("of those, terminal later")
                self.forget(name, story)
                del self.overdue[name]
        if self.operator.proc and self.operator.proc.poll() is not None:
            self.tally.add("operator crashed", self.operator.log.read_text()[-500:])
            self.operator.start()

    def ended(self, name: str, run: dict[str, Any], listed_at: float, bound: float) -> bool:
        """Judge a terminal run by its own record: seconds from its creation to its recorded
        end, past its deadline (a poll may see it long after, while the senders are busy).
        True if it ended past its bound."""
        st = run.get("status") or {}
        created = parse_time(run["metadata"].get("creationTimestamp"))
        finished = parse_time(st.get("finishedAt"))
        if created is not None and finished is not None:
            late = (finished - created).total_seconds() - self.deadlines[name]
        else:  # no record of its end: the poll's view is all there is
            late = listed_at - bound + BOUND_SLACK
        if late > self.latest:
            self.latest, self.slowest = late, (
                f"{name}: {st.get('phase')}/{st.get('reason')} ({st.get('message')}), "
                f"created {run['metadata'].get('creationTimestamp')}, started "
                f"{st.get('startedAt')}, finished {st.get('finishedAt')}")
        if late <= BOUND_SLACK:
            return False
        self.tally.add("not terminal within its bound", f"{name}: {st}")
        return True

    def forget(self, name: str, story: str | None) -> None:
        self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, "storyruns",
                                                 name)
        if story:
            self.delete_story(story)

    def stuck(self) -> None:
        """Follow the runs past their bound a last while; count those that never end."""
        deadline = time.monotonic() + LAST_CHANCE
        while self.overdue and time.monotonic() < deadline:
            time.sleep(1)
            self.poll()
        for name in self.overdue:
            self.tally.add("not terminal within its bound", name)
            self.tally.add("never terminal (stuck)", name)

    def delete_story(self, name: str) -> None:
        try:
            self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, "stories",
                                                     name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def wait(self, at_most: int) -> None:
        while self.going() > at_most:
            time.sleep(0.5)
            self.poll()


class Sender:
    """Sends each drawn case (a StoryRun, or a Story then a StoryRun of it) from a bounded pool
    of threads, counting what the API server answers."""

    def __init__(self, api: client.CustomObjectsApi, namespace: str, tally: Tally,
                 follower: Follower) -> None:
        self.api, self.namespace, self.tally, self.follower = api, namespace, tally, follower
        self.pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="fuzz-send")
        self.slots = threading.BoundedSemaphore(SENDERS * 2)
        self.failures: list[BaseException] = []

    def submit(self, case: list[dict[str, Any]]) -> None:
        self.slots.acquire()
        future = self.pool.submit(self.deliver, case)
        future.add_done_callback(self.done)

    def done(self, future: Future[None]) -> None:
        self.slots.release()
        if not future.cancelled() and future.exception():
            self.failures.append(future.exception())

    def deliver(self, case: list[dict[str, Any]]) -> None:
        story = None
        for obj in case:
            self.tally.add("tried")
            try:
                self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                         PLURALS[obj["kind"]], obj)
            except ApiException as exc:
                self.tally.refused(exc.status or 0, exc.body or str(exc))
                continue
            except Exception as exc:  # counted (it must stay at zero), not fatal to the run
                self.tally.add("no answer read", f"{exc!r}: {json.dumps(obj)[:300]}")
                continue
            if obj["kind"] == "Story":
                story = obj["metadata"]["name"]
                self.tally.add("accepted, a Story (run by the StoryRun sent after it)")
                continue
            spec = obj["spec"]
            # A run of a Story has the Story's deadline; a Story that never came waits as long.
            self.follower.accepted(obj["metadata"]["name"],
                                   spec.get("timeoutSeconds") or DEADLINE, story)
            story = None
        if story:  # its run was refused: nothing will run it
            self.follower.delete_story(story)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        assert not self.failures, self.failures


@pytest.mark.timeout(max(600, OBJECTS // 2))
def test_hostile_storyruns_never_hurt_the_api_server_or_the_operator(
        crds: ControlPlane, namespace: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http.client, "_MAXHEADERS", MAX_HEADERS)
    op = OperatorProcess(crds, crds.logs, label=f"fuzz-{namespace}", extra=(
        "-n", namespace, "--webhook-port", str(free_port()), "--webhook-host", "127.0.0.1",
        "--webhook-cert-dir", str(tmp_path)), env={"RUNCTL_STORY_WAIT_SECONDS": str(DEADLINE)})
    op.start()
    api = client.CustomObjectsApi(crds.api_client())
    tally = Tally()
    follower = Follower(api, namespace, tally, op)
    sender = Sender(api, namespace, tally, follower)
    cycle = storyrun("cycle", [sim_step("a", "b"), sim_step("b", "c"), sim_step("c", "a")])
    drawn = [0, 0]  # cases, objects

    def webhook_serves() -> bool:
        try:
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, "storyruns", cycle,
                                                dry_run="All")
        except ApiException as exc:
            return "cycle" in (exc.body or "")
        return False

    started = time.monotonic()
    try:
        wait_for("the webhook to serve", webhook_serves, timeout=60)

        @seed(SEED)
        @settings(max_examples=OBJECTS, deadline=None, database=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(st.data())
        def send(data: st.DataObject) -> None:
            # Every example draws a case (hypothesis wants the same draws on the same data);
            # those past the budget are not sent. Drawing one takes milliseconds.
            run_name, story_name = f"f{drawn[0] + 1:05d}", f"s{drawn[0] + 1:05d}"
            case: list[dict[str, Any]]
            if data.draw(st.integers(0, 2)):
                case = [data.draw(hostile_runs())]
            else:
                story, run = data.draw(hostile_stories())
                if story["metadata"].get("name") == "x":
                    story["metadata"]["name"] = story_name
                if isinstance(run["spec"].get("storyRef"), dict):
                    run["spec"]["storyRef"]["name"] = story["metadata"]["name"]
                case = [story, run]
            if case[-1]["metadata"].get("name") == "x":
                case[-1]["metadata"]["name"] = run_name
            if drawn[1] >= OBJECTS:
                return
            drawn[0] += 1
            drawn[1] += len(case)
            sender.submit(case)
            if drawn[0] % 10 == 0:
                follower.poll()
            follower.wait(IN_FLIGHT)

        send()
        sender.close()
        sent = time.monotonic() - started
        follower.wait(0)
        follower.stuck()
    finally:
        sender.pool.shutdown(wait=True, cancel_futures=True)
        op.stop()
        crds.kubectl("delete", "validatingwebhookconfiguration", "runctl.dev",
                     "--ignore-not-found", check=False)
    elapsed = time.monotonic() - started
    if RESULTS:
        heading = (f"# Fuzzing results\n\n{tally.counts['tried']} objects ({drawn[0]} cases: a "
                   f"StoryRun, or a Story and a StoryRun of it) in {elapsed:.0f} s on "
                   f"{os.cpu_count()} cores, {SENDERS} senders, seed {SEED}, Python "
                   f"{platform.python_version()}, the local control plane (`make fuzz`; each "
                   f"accepted run's deadline at most {DEADLINE} s, bound "
                   f"{DEADLINE + BOUND_SLACK} s, from its creation to the end it records). Sending "
                   f"took {sent:.0f} s; the latest run was recorded terminal "
                   f"{follower.latest:.0f} s past its deadline.")
        Path(RESULTS).write_text(markdown(tally, heading))
    print(json.dumps(dict(tally.counts), indent=1), f"sent in {sent:.0f} s, all ended in "
          f"{elapsed:.0f} s, latest {follower.latest:.0f} s past its deadline: {follower.slowest}")
    bad = {k: tally.examples.get(k, []) for k in MUST_BE_ZERO if tally.counts.get(k)}
    assert not bad, json.dumps(bad, indent=1)
    assert tally.counts["refused at apply, field named"] > 0
    assert tally.counts["accepted, terminal"] > 0


def test_an_answer_with_a_warning_for_every_unknown_field_is_read(
        crds: ControlPlane, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by `make fuzz`: a run whose many steps each carry an unknown field got an answer
    the fuzzer could not read (over 100 Warning headers), counted nowhere. With the limit
    raised both answers are read: 100 such steps are created (the fields dropped), 101 are
    refused naming spec.steps."""
    monkeypatch.setattr(http.client, "_MAXHEADERS", MAX_HEADERS)
    api = client.CustomObjectsApi(crds.api_client())
    steps = [{**sim_step(f"g{i}"), "colour": "red"} for i in range(101)]
    _, status, headers = api.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, namespace, "storyruns", storyrun("wide", steps[:100]))
    assert status == 201
    assert 'unknown field \\"spec.steps[99].colour\\"' in headers["Warning"]
    with pytest.raises(ApiException) as refused:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, "storyruns",
                                            storyrun("wider", steps))
    assert refused.value.status == 422
    assert names_a_field(refused.value.body or "")
    assert "spec.steps: Too many: 101" in (refused.value.body or "")

"""`runctl logs RUN [STEP] [-f]`: the logs of a run's pods, through the API server.

The pods are the ones labelled with the run (and the step), in the tree's order, attempts in
order; the API server fetches each log from the pod's node, as for `kubectl logs`. With several
pods each line starts with `[step/attempt]`. `-f` follows every pod that is running or starts
later, and ends once the run is terminal and every followed pod has ended: a stream is waited
for at most a second after its pod was seen ended, so a node that keeps a stream open past its
container's end (kwok does) cannot keep the command waiting.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from runctl.api.resources import executed_steps, parse_story_run
from runctl.api.wire import ATTEMPT_LABEL, CONTAINER, RUN_LABEL, STEP_LABEL
from runctl.cli.session import (
    REQUEST_TIMEOUT,
    Failed,
    Session,
    add_login_flags,
    api_message,
    connect,
)
from runctl.cli.view import tree_order
from runctl.machine.phases import RUN_TERMINAL

ENDED = ("Succeeded", "Failed")
WAKE_SECONDS = 2
"""The longest `-f` waits on the pod watch before it looks at the run's phase again."""
GRACE = 1.0
"""How long a followed stream may go on after its pod was seen ended: a kubelet ends it when
the container exits; a node that keeps it open (kwok does) is not waited for longer."""


@dataclass
class _Out:
    """Lines from several pods, written whole and in the order they arrive."""

    prefix: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    failures: list[str] = field(default_factory=list)

    def line(self, label: str, text: str) -> None:
        with self.lock:
            sys.stdout.write(f"[{label}] {text}\n" if self.prefix else f"{text}\n")
            sys.stdout.flush()

    def failed(self, label: str, exc: ApiException) -> None:
        reason = api_message(exc)
        with self.lock:
            self.failures.append(label)
            print(f"runctl logs: no logs for {label}: {reason}", file=sys.stderr)


def _label(pod: dict[str, Any]) -> str:
    labels = pod["metadata"].get("labels") or {}
    return f"{labels.get(STEP_LABEL, '?')}/{labels.get(ATTEMPT_LABEL, '?')}"


def _started(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") in ("Running", *ENDED)


def _pods(session: Session, selector: str, order: dict[str, int]) -> list[dict[str, Any]]:
    try:
        found = session.core.list_namespaced_pod(
            session.namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        raise session.refused(exc, "the pods") from exc
    pods: list[dict[str, Any]] = session.api.sanitize_for_serialization(found)["items"]

    def key(pod: dict[str, Any]) -> tuple[int, int, str]:
        labels = pod["metadata"].get("labels") or {}
        attempt = labels.get(ATTEMPT_LABEL, "0")
        return (order.get(labels.get(STEP_LABEL, ""), len(order)),
                int(attempt) if attempt.isdigit() else 0,
                pod["metadata"].get("creationTimestamp") or "")
    return sorted(pods, key=key)


def _read(session: Session, pod: dict[str, Any], out: _Out, follow: bool) -> None:
    name = pod["metadata"]["name"]
    try:
        response: Any = session.core.read_namespaced_pod_log(
            name, session.namespace, container=CONTAINER, follow=follow,
            _preload_content=False)
    except ApiException as exc:
        out.failed(_label(pod), exc)
        return
    with contextlib.suppress(Exception):  # a stream cut short: what came is printed
        for text in iter_resp_lines(response):
            out.line(_label(pod), text)


def _follow(session: Session, run: str, selector: str, order: dict[str, int],
            out: _Out) -> None:
    threads: dict[str, threading.Thread] = {}
    ended: dict[str, float] = {}  # when a followed pod was first seen ended (or gone)
    while True:
        pods = {p["metadata"]["name"]: p for p in _pods(session, selector, order)}
        for name, pod in pods.items():
            if name not in threads and _started(pod):
                done = pod["status"]["phase"] in ENDED
                threads[name] = threading.Thread(
                    target=_read, args=(session, pod, out, not done), daemon=True)
                threads[name].start()
        for name in threads:
            if name not in pods or pods[name]["status"]["phase"] in ENDED:
                ended.setdefault(name, time.monotonic())
        phase = (session.get_run(run).get("status") or {}).get("phase")
        if phase in RUN_TERMINAL and all(
                not thread.is_alive() or time.monotonic() - ended.get(name, math.inf) > GRACE
                for name, thread in threads.items()):
            return  # streams still open end with the process (daemon threads)
        for _ in watch.Watch().stream(session.core.list_namespaced_pod, session.namespace,
                                      label_selector=selector, timeout_seconds=WAKE_SECONDS):
            break  # any change to the pods: look again


def _logs(args: argparse.Namespace) -> int:
    session = connect(args)
    story = session.get_run(args.run)
    steps = [s for s, *_ in tree_order(executed_steps(parse_story_run(story)))]
    names = [s.name for s in steps]
    if args.step and args.step not in names:
        raise Failed(f"storyrun {args.run} has no step {args.step} (its steps: "
                     f"{', '.join(names)})")
    order = {name: i for i, name in enumerate(names)}
    selector = f"{RUN_LABEL}={args.run}"
    if args.step:
        selector += f",{STEP_LABEL}={args.step}"
    what = f"step {args.step} of storyrun {args.run}" if args.step else f"storyrun {args.run}"
    pods = _pods(session, selector, order)
    if args.follow:
        _follow(session, args.run, selector, order, _Out(prefix=not args.step or len(pods) > 1))
        return 0
    started = [p for p in pods if _started(p)]
    if not started:
        raise Failed(f"{what} has no pod that started (none yet, or its workloads were "
                     "deleted)")
    out = _Out(prefix=len(started) > 1)
    for pod in started:
        _read(session, pod, out, False)
    return 1 if len(out.failures) == len(started) else 0


def register(sub: Any) -> None:
    logs = sub.add_parser(
        "logs", help="print the logs of a run's pods (or one step's); -f to follow",
        description="Print the logs of the run's pods through the API server, as kubectl logs "
                    "does, in the tree's order; with several pods each line starts with "
                    "[step/attempt].")
    logs.add_argument("run", help="the StoryRun's name")
    logs.add_argument("step", nargs="?", help="only this step's pods")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="follow the logs until the run is terminal")
    add_login_flags(logs)
    logs.set_defaults(func=_logs)

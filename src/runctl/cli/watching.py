"""`runctl watch RUN` and `runctl stop RUN [--watch]`: follow a run live until it is terminal.

The run and its StepRuns are each listed once and then watched (a Kubernetes watch, resumed from
the last resourceVersion when the server ends it, listed afresh when that version is gone), so
the screen changes when the cluster does, not on a polling timer. On a terminal the tree is
redrawn in place (its running durations tick once a second); otherwise each transition is one
plain line. The exit status tells a script how the run ended.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, NoReturn

from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.live import Live

from runctl.api.wire import GROUP, STEP_RUNS, STORY_RUNS, VERSION
from runctl.cli import output, render
from runctl.cli.fanout import steps_selector
from runctl.cli.session import Failed, Session, add_login_flags, connect
from runctl.cli.view import RunView, run_view
from runctl.machine.phases import RUN_TERMINAL, FinallyPolicy, ShutdownMode

EXIT_CODES = {"Succeeded": 0, "Failed": 3, "Canceled": 4, "TimedOut": 5}
"""How `watch` exits once the run is terminal; 1 is any error, 2 a usage error (argparse)."""

EXIT_HELP = ("exit status: 0 Succeeded, 3 Failed, 4 Canceled, 5 TimedOut; 1 an error (unknown "
             "run, no cluster, no permission), 2 bad arguments")

WATCH_SECONDS = 50
"""How long one watch request lasts before it is resumed (the server ends it then)."""

Event = tuple[str, str, Any]


def _watch(session: Session, plural: str, events: queue.Queue[Event],
           **selector: Any) -> None:
    """List then watch one kind into `events` ("LIST" carries every item), forever.

    A connection lost (the API server restarting) is retried each second from a fresh list;
    a refusal (permission) ends the command through the queue."""
    version: str | None = None
    while True:
        try:
            if version is None:
                listing: Any = session.custom.list_namespaced_custom_object(
                    GROUP, VERSION, session.namespace, plural, **selector)
                version = listing["metadata"]["resourceVersion"]
                events.put((plural, "LIST", listing["items"]))
            stream = watch.Watch().stream(
                session.custom.list_namespaced_custom_object, GROUP, VERSION,
                session.namespace, plural, resource_version=version,
                timeout_seconds=WATCH_SECONDS, allow_watch_bookmarks=True, **selector)
            for event in stream:
                version = event["object"]["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    events.put((plural, event["type"], event["object"]))
        except ApiException as exc:
            if exc.status == 410:
                version = None
                continue
            events.put(("error", plural, exc))
            return
        except Exception:  # the connection: wait for the API server, then list afresh
            version = None
            time.sleep(1)


def follow(session: Session, name: str) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The run and its StepRuns each time either changes, until the run is terminal.

    Not the StepRuns of fan-out items: the run's record counts them, so a step of 10,000 items
    is one object to follow, not 10,000."""
    session.get_run(name)  # an unknown run or missing CRDs fail here, in one line
    events: queue.Queue[Event] = queue.Queue()
    for plural, selector in ((STORY_RUNS, {"field_selector": f"metadata.name={name}"}),
                             (STEP_RUNS, {"label_selector": steps_selector(name)})):
        threading.Thread(target=_watch, args=(session, plural, events), kwargs=selector,
                         daemon=True, name=f"watch-{plural}").start()
    run: dict[str, Any] | None = None
    stepruns: dict[str, dict[str, Any]] | None = None
    while True:
        kind, change, obj = events.get()
        if kind == "error":
            raise session.refused(obj, f"the {change} of {name}")
        if kind == STORY_RUNS:
            if change == "DELETED" or (change == "LIST" and not obj):
                raise Failed(f"storyrun {name} was deleted while it was watched")
            run = obj[0] if change == "LIST" else obj
        elif change == "LIST":
            stepruns = {o["metadata"]["name"]: o for o in obj}
        elif stepruns is not None and change == "DELETED":
            stepruns.pop(obj["metadata"]["name"], None)
        elif stepruns is not None:
            stepruns[obj["metadata"]["name"]] = obj
        if run is not None and stepruns is not None:
            yield run, list(stepruns.values())
            if (run.get("status") or {}).get("phase") in RUN_TERMINAL:
                return


class _Screen:
    """The live tree: rendered afresh at each refresh, so running durations keep counting."""

    def __init__(self) -> None:
        self.objects: tuple[dict[str, Any], list[dict[str, Any]]] | None = None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.objects is not None:
            yield Group(*render.run_tree(run_view(*self.objects, output.now())))


def _clock() -> str:
    return dt.datetime.now().astimezone().strftime("%H:%M:%S")


def show_until_done(session: Session, name: str) -> int:
    """Show the run until it is terminal; the exit status for its terminal phase."""
    console = output.console()
    last: RunView | None = None
    if console.is_terminal:
        screen = _Screen()
        with Live(screen, console=console, refresh_per_second=1, auto_refresh=True) as live:
            for objects in follow(session, name):
                screen.objects = objects
                live.refresh()
        last = run_view(*objects, output.now())
    else:
        for objects in follow(session, name):
            view = run_view(*objects, output.now())
            output.show(render.transitions(last, view, _clock()), console)
            last = view
    assert last is not None  # follow yields at least once before it returns
    return EXIT_CODES[last.phase]


def leave(code: int) -> NoReturn:
    """End the process at once with `code`. The watch threads are blocked reading open
    streams; letting the interpreter finalize under them could abort it (SIGABRT, seen when the
    run had already ended as the command started), and they hold nothing to clean up."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _watch_command(args: argparse.Namespace) -> int:
    leave(show_until_done(connect(args), args.run))


def stop_patch(drain: bool, skip_finally: bool) -> dict[str, Any]:
    """The one merge patch that stops a run and says how (so the operator never sees the stop
    without its mode)."""
    shutdown = {**({"mode": ShutdownMode.DRAIN.value} if drain else {}),
                **({"finally": FinallyPolicy.SKIP.value} if skip_finally else {})}
    return {"spec": {"cancelRequested": True, **({"shutdown": shutdown} if shutdown else {})}}


def _stop(args: argparse.Namespace) -> int:
    session = connect(args)
    run = session.get_run(args.run)
    phase = (run.get("status") or {}).get("phase")
    if phase in RUN_TERMINAL:
        print(f"storyrun {args.run} is already {phase}: nothing to stop")
    else:
        try:
            session.custom.patch_namespaced_custom_object(
                GROUP, VERSION, session.namespace, STORY_RUNS, args.run,
                stop_patch(args.drain, args.skip_finally),
                _content_type="application/merge-patch+json")
        except ApiException as exc:
            raise session.refused(exc, f"storyrun {args.run}") from exc
        print(f"storyrun {args.run} stop requested")
    if args.watch:
        leave(show_until_done(session, args.run))
    return 0


def register(sub: Any) -> None:
    w = sub.add_parser(
        "watch", help="show a run live until it ends; the exit status says how it ended",
        description="Show a run's tree live (from a Kubernetes watch) until the run is "
                    "terminal. When standard output is not a terminal, print one line per "
                    "transition instead. NO_COLOR turns colour off.", epilog=EXIT_HELP)
    w.add_argument("run", help="the StoryRun's name")
    add_login_flags(w)
    w.set_defaults(func=_watch_command)

    stop = sub.add_parser(
        "stop", help="stop a run (sets spec.cancelRequested)",
        description="Request a stop: no main step starts after it, running steps are "
                    "stopped (or, with --drain, left to finish) within "
                    "spec.shutdown.gracePeriodSeconds, finally steps run (unless "
                    "--skip-finally), and the run ends Canceled.",
        epilog="with --watch, " + EXIT_HELP)
    stop.add_argument("run", help="the StoryRun's name")
    stop.add_argument("--drain", action="store_true",
                      help="let running steps finish (spec.shutdown.mode: Drain)")
    stop.add_argument("--skip-finally", action="store_true",
                      help="do not run the finally steps (spec.shutdown.finally: Skip)")
    stop.add_argument("--watch", action="store_true", help="then watch the run until it ends")
    add_login_flags(stop)
    stop.set_defaults(func=_stop)

"""`runctl suspend` and `runctl resume`: set a run's `spec.suspend`, and say what that does.

A terminal run is left alone (the API server would refuse the change anyway), and a run already
as asked is reported as such, so a script may call either command twice.
"""

from __future__ import annotations

import argparse
from typing import Any

from kubernetes.client.exceptions import ApiException

from runctl.api.wire import GROUP, STORY_RUNS, VERSION
from runctl.cli.session import add_login_flags, connect
from runctl.machine.phases import RUN_TERMINAL


def _set(args: argparse.Namespace, suspend: bool) -> int:
    session = connect(args)
    run = session.get_run(args.run)
    phase = (run.get("status") or {}).get("phase")
    word = "suspend" if suspend else "resume"
    if phase in RUN_TERMINAL:
        print(f"storyrun {args.run} is already {phase}: nothing to {word}")
        return 0
    if bool((run.get("spec") or {}).get("suspend")) is suspend:
        print(f"storyrun {args.run} is already {'suspended' if suspend else 'not suspended'}")
        return 0
    try:
        session.custom.patch_namespaced_custom_object(
            GROUP, VERSION, session.namespace, STORY_RUNS, args.run,
            {"spec": {"suspend": suspend}}, _content_type="application/merge-patch+json")
    except ApiException as exc:
        raise session.refused(exc, f"storyrun {args.run}") from exc
    if suspend:
        print(f"storyrun {args.run} suspended: nothing new starts until "
              f"`runctl resume {args.run}`; running steps go on")
    else:
        print(f"storyrun {args.run} resumed")
    return 0


def register(sub: Any) -> None:
    suspend = sub.add_parser(
        "suspend", help="suspend a run (sets spec.suspend): nothing new starts",
        description="Suspend a run: no step, item, retry or finally step starts until it is "
                    "resumed; running steps go on and their ends are recorded. The run's "
                    "timeoutSeconds keeps counting. A stop ends a suspended run as any other.")
    suspend.add_argument("run", help="the StoryRun's name")
    add_login_flags(suspend)
    suspend.set_defaults(func=lambda args: _set(args, True))

    resume = sub.add_parser(
        "resume", help="resume a suspended run (sets spec.suspend to false)",
        description="Resume a suspended run: what waited starts as it would have.")
    resume.add_argument("run", help="the StoryRun's name")
    add_login_flags(resume)
    resume.set_defaults(func=lambda args: _set(args, False))

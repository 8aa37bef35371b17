"""`runctl rerun RUN [--from STEP ...] [-p NAME=VALUE ...] [--watch]`: run a finished run again.

The command creates a new StoryRun naming RUN in `spec.rerunOf` (the source is only read, here
and by the operator), named by the API server. Whether the source can run again, and whether
the steps and params fit it, is checked here first with the check the admission webhook and the
operator make (`runctl.operator.rerun.check`), so a bad re-run is refused before anything is
created even on a cluster that serves no webhook, with the same message naming the field.
"""

from __future__ import annotations

import argparse
from typing import Any

from runctl.api.spec import MAX_RUN_NAME
from runctl.api.wire import API_VERSION
from runctl.cli.session import add_login_flags, connect
from runctl.cli.start import SUFFIX, create_run, declared_types, param, param_values
from runctl.cli.watching import EXIT_HELP
from runctl.operator import rerun


def rerun_body(source: str, steps: list[str], params: dict[str, Any]) -> dict[str, Any]:
    """A re-run of `source` whose name the API server makes unique from the source's."""
    prefix = source[: MAX_RUN_NAME - SUFFIX - 1].rstrip("-.")
    spec: dict[str, Any] = {"rerunOf": {"name": source}}
    if steps:
        spec["rerun"] = {"from": steps}
    if params:
        spec["params"] = params
    return {"apiVersion": API_VERSION, "kind": "StoryRun",
            "metadata": {"generateName": f"{prefix}-"}, "spec": spec}


def declared(source: dict[str, Any]) -> dict[str, str]:
    """The types of the params the source's recorded definition declares (none for a run of
    inline steps, whose re-run takes no params)."""
    resolved = (source.get("status") or {}).get("resolved") or {}
    return declared_types(resolved.get("spec") or {})


def _rerun(args: argparse.Namespace) -> int:
    session = connect(args)
    source = session.get_run(args.run)
    params = param_values(args.param or [], declared(source))
    body = rerun_body(args.run, args.steps or [], params)
    return create_run(session, body, f"a re-run of {args.run}", args.watch,
                      rerun.check(body["spec"], session.namespace, source)[1])


def register(sub: Any) -> None:
    rerun = sub.add_parser(
        "rerun", help="run a finished run again, reusing what succeeded, and print its name",
        description="Create a new StoryRun that runs RUN (a finished run) again: it executes "
                    "RUN's recorded definition, reuses the steps that succeeded there with "
                    "the same inputs (no pod runs for them) and executes the rest; RUN itself "
                    "is never changed. Prints the new run's name (RUN-xxxxx). A param's VALUE "
                    "is text for a string param and JSON for any other type; params not given "
                    "keep RUN's values.", epilog="with --watch, " + EXIT_HELP)
    rerun.add_argument("run", help="the finished StoryRun to run again")
    rerun.add_argument("--from", dest="steps", action="append", metavar="STEP",
                       help="execute this step again, and every step downstream of it, even "
                            "where it succeeded (repeatable)")
    rerun.add_argument("-p", "--param", action="append", type=param, metavar="NAME=VALUE",
                       help="change a param's value (repeatable)")
    rerun.add_argument("--watch", action="store_true", help="then watch the run until it ends")
    add_login_flags(rerun)
    rerun.set_defaults(func=_rerun)

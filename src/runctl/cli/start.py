"""`runctl start STORY [-p NAME=VALUE ...] [--watch]`: a run of a Story, named by the API server.

Whether the params fit the Story is checked here first, with the admission webhook's own check
(`runctl.flow.params.check_run`), so params that do not fit are refused before anything is
created even on a cluster that serves no webhook, in the webhook's words, naming the param.
`create_run` is where `runctl rerun` refuses its own mistakes too.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes.client.exceptions import ApiException

from runctl.api.spec import MAX_RUN_NAME
from runctl.api.wire import API_VERSION, GROUP, STORIES, STORY_RUNS, VERSION
from runctl.cli.session import Failed, Session, add_login_flags, connect
from runctl.cli.watching import EXIT_HELP, leave, show_until_done
from runctl.flow import params as flow_params
from runctl.machine.dag import Problem

SUFFIX = 5
"""The characters the API server appends to a generateName."""


def param(text: str) -> tuple[str, str]:
    """One `-p NAME=VALUE`."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def param_values(pairs: list[tuple[str, str]], declared: dict[str, str]) -> dict[str, Any]:
    """The run's `spec.params` from `NAME=VALUE` pairs: the text itself for a string param (and
    for a name the Story does not declare, which the check then refuses by name), JSON for any
    other type (`3`, `true`, `["a","b"]`); text that is not JSON is kept as it is, to be
    refused as of the wrong type, naming the param."""
    values: dict[str, Any] = {}
    for name, text in pairs:
        if declared.get(name, "string") == "string":
            values[name] = text
            continue
        try:
            values[name] = json.loads(text)
        except ValueError:
            values[name] = text
    return values


def declared_types(definition: Mapping[str, Any]) -> dict[str, str]:
    """The type of each param a definition (a Story's spec, a run's recorded one) declares."""
    return {name: p.type for name, p in flow_params.declared(definition.get("params")).items()}


def run_body(story: str, params: dict[str, Any]) -> dict[str, Any]:
    """A StoryRun of `story` whose name the API server makes unique from the Story's name."""
    prefix = story[: MAX_RUN_NAME - SUFFIX - 1].rstrip("-.")
    return {"apiVersion": API_VERSION, "kind": "StoryRun",
            "metadata": {"generateName": f"{prefix}-"},
            "spec": {"storyRef": {"name": story}, **({"params": params} if params else {})}}


def _start(args: argparse.Namespace) -> int:
    session = connect(args)
    definition = session.get("story", STORIES, args.story).get("spec") or {}
    params = param_values(args.param or [], declared_types(definition))
    return create_run(session, run_body(args.story, params), f"a run of story {args.story}",
                      args.watch, flow_params.check_run(definition, params))


def create_run(session: Session, body: dict[str, Any], what: str, watch: bool,
               problems: Sequence[Problem]) -> int:
    """Create the StoryRun `body`, print the name the API server gave it, and with `watch`
    follow it to its end (the exit status says how). Refused in one line about `what`, with
    nothing created, when `problems` (the webhook's check, made here) has any; else when the
    API server refuses it."""
    if problems:
        raise Failed(f"{what} would be refused: " + "; ".join(str(p) for p in problems))
    try:
        created: Any = session.custom.create_namespaced_custom_object(
            GROUP, VERSION, session.namespace, STORY_RUNS, body)
    except ApiException as exc:
        raise session.refused(exc, what) from exc
    name = created["metadata"]["name"]
    print(name, flush=True)
    if watch:
        leave(show_until_done(session, name))
    return 0


def register(sub: Any) -> None:
    start = sub.add_parser(
        "start", help="start a run of a Story and print its name",
        description="Create a StoryRun of STORY (named STORY-xxxxx by the API server) with the "
                    "given params, and print its name. A param's VALUE is text for a string "
                    "param and JSON for any other type (3, true, [\"a\"]). Params that do not "
                    "fit the Story are refused as kubectl apply would refuse them, naming "
                    "the param.", epilog="with --watch, " + EXIT_HELP)
    start.add_argument("story", help="the Story's name")
    start.add_argument("-p", "--param", action="append", type=param, metavar="NAME=VALUE",
                       help="a param's value (repeatable)")
    start.add_argument("--watch", action="store_true", help="then watch the run until it ends")
    add_login_flags(start)
    start.set_defaults(func=_start)

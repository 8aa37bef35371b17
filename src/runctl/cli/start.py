"""`runctl start STORY [-p NAME=VALUE ...] [--watch]`: a run of a Story, named by the API server.

The command only creates the StoryRun: whether its params fit the Story is decided where it is
decided for `kubectl apply` (the admission webhook, else the operator), so a person reads the
same message, naming the param, either way.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from kubernetes.client.exceptions import ApiException

from runctl.api.spec import MAX_RUN_NAME
from runctl.api.wire import API_VERSION, GROUP, STORIES, STORY_RUNS, VERSION
from runctl.cli.session import Session, add_login_flags, connect
from runctl.cli.watching import EXIT_HELP, leave, show_until_done

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
    for a name the Story does not declare, which the API server then refuses by name), JSON for
    any other type (`3`, `true`, `["a","b"]`); text that is not JSON is sent as it is, to be
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


def run_body(story: str, params: dict[str, Any]) -> dict[str, Any]:
    """A StoryRun of `story` whose name the API server makes unique from the Story's name."""
    prefix = story[: MAX_RUN_NAME - SUFFIX - 1].rstrip("-.")
    return {"apiVersion": API_VERSION, "kind": "StoryRun",
            "metadata": {"generateName": f"{prefix}-"},
            "spec": {"storyRef": {"name": story}, **({"params": params} if params else {})}}


def _declared(session: Session, story: str) -> dict[str, str]:
    found = session.get("story", STORIES, story)
    return {p["name"]: p.get("type", "string")
            for p in (found.get("spec") or {}).get("params") or ()}


def _start(args: argparse.Namespace) -> int:
    session = connect(args)
    params = param_values(args.param or [], _declared(session, args.story))
    return create_run(session, run_body(args.story, params), f"a run of story {args.story}",
                      args.watch)


def create_run(session: Session, body: dict[str, Any], what: str, watch: bool) -> int:
    """Create the StoryRun `body` (refused: one line about `what`), print the name the API
    server gave it, and with `watch` follow it to its end (the exit status says how)."""
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

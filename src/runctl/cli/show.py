"""`runctl get RUN` (one run as a tree), `runctl get RUN --items STEP` (a page of a fan-out
step's items) and `runctl list` (the runs of a namespace)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

from runctl.api.wire import GROUP, STORY_RUNS, VERSION
from runctl.cli import output, render
from runctl.cli.session import REQUEST_TIMEOUT, Failed, Session, add_login_flags, connect
from runctl.cli.view import age, item_lines, run_view
from runctl.machine.phases import StepPhase

ITEMS_PAGE = 50
"""How many items `runctl get RUN --items STEP` lists at once unless --limit says."""

Page = tuple[list[dict[str, Any]], str]


def _dump(args: argparse.Namespace, objects: list[dict[str, Any]], more: str = "") -> None:
    """As `kubectl get -o json|yaml` would give them: a List, with the next page's token."""
    document = {"apiVersion": "v1", "kind": "List",
                **({"metadata": {"continue": more}} if more else {}), "items": objects}
    sys.stdout.write(json.dumps(document, indent=2) + "\n" if args.output == "json"
                     else yaml.safe_dump(document, sort_keys=False))


def _get(args: argparse.Namespace) -> int:
    if args.items is None and (args.limit != ITEMS_PAGE or args.continue_ or args.phase):
        args.usage_error("--limit, --continue and --phase go with --items STEP")
    session = connect(args)
    run = session.get_run(args.run)
    if args.items is not None:
        return _items(args, session, run)
    stepruns = session.list_stepruns(args.run)
    if args.output in ("json", "yaml"):
        _dump(args, [run, *stepruns])  # the run, then its StepRuns
        return 0
    view = run_view(run, stepruns, output.now())
    output.show(render.run_tree(view, wide=args.output == "wide"))
    return 0


def read_items(list_page: Callable[[str | None], Page], *, limit: int, phase: str | None,
               token: str | None) -> Page:
    """A page of items from `token` on, and the next page's token ("" after the last). With a
    phase, pages are read until `limit` items are in it (or none is left): each page is kept
    whole, so the token never skips an item, and the page may hold more than `limit`."""
    found: list[dict[str, Any]] = []
    while True:
        page, token = list_page(token)
        found += [item for item in page if phase is None
                  or ((item.get("status") or {}).get("phase") or StepPhase.PENDING) == phase]
        if phase is None or len(found) >= limit or not token:
            return found, token


def next_page(args: argparse.Namespace, token: str) -> str:
    """The command that lists the page after this one."""
    flags = [f"--limit {args.limit}" if args.limit != ITEMS_PAGE else "",
             f"--phase {args.phase}" if args.phase else "",
             f"-n {args.namespace}" if args.namespace else "",
             f"-o {args.output}" if args.output != "tree" else ""]
    return " ".join(["runctl get", args.run, "--items", args.items, *filter(None, flags),
                     "--continue", token])


def _items(args: argparse.Namespace, session: Session, run: dict[str, Any]) -> int:
    now = output.now()
    view = run_view(run, [], now)
    step = next((s for s in view.steps if s.name == args.items), None)
    if step is None:
        raise Failed(f"storyrun {args.run} has no step {args.items} (its steps: "
                     f"{', '.join(s.name for s in view.steps)})")
    if not step.fan_out:
        raise Failed(f"step {args.items} of storyrun {args.run} is not a fan-out (it has no "
                     f"forEach): runctl get {args.run} shows it")
    items, more = read_items(
        lambda token: session.list_items(args.run, args.items, args.limit, token),
        limit=args.limit, phase=args.phase, token=args.continue_)
    if args.output in ("json", "yaml"):
        _dump(args, items, more)
        return 0
    output.show(render.items_page(view, step, item_lines(run, items, now),
                                  next_page(args, more) if more else ""))
    return 0


def _list(args: argparse.Namespace) -> int:
    session = connect(args)
    try:
        if args.all_namespaces:
            found: Any = session.custom.list_cluster_custom_object(
                GROUP, VERSION, STORY_RUNS, _request_timeout=REQUEST_TIMEOUT)
        else:
            found = session.custom.list_namespaced_custom_object(
                GROUP, VERSION, session.namespace, STORY_RUNS, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        raise session.refused(exc, STORY_RUNS) from exc
    now = output.now()
    rows = sorted((render.RunRow(
        namespace=item["metadata"].get("namespace", ""), name=item["metadata"]["name"],
        phase=(item.get("status") or {}).get("phase") or "Pending",
        progress=(item.get("status") or {}).get("progress") or "",
        reason=(item.get("status") or {}).get("reason") or "",
        age=age(item["metadata"].get("creationTimestamp"), now),
    ) for item in found.get("items", [])), key=lambda r: (r.namespace, r.name))
    if not rows:
        where = "any namespace" if args.all_namespaces else f"namespace {session.namespace}"
        print(f"No runs found in {where}.", file=sys.stderr)
        return 0
    output.show(render.run_list(rows, args.all_namespaces))
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a whole number of at least 1: {text!r}")
    return int(text)


def register(sub: Any) -> None:
    get = sub.add_parser(
        "get", help="show a run: its steps as a tree with phase, attempts, duration, reason",
        description="Show one StoryRun: a header (phase, reason, start, duration, stop) and "
                    "its steps in DAG order, each under the step it needs; a fan-out step is "
                    "one line of item counts. With --items STEP, list that fan-out step's "
                    "items a page at a time.")
    get.add_argument("run", help="the StoryRun's name")
    get.add_argument("-o", "--output", choices=["tree", "wide", "json", "yaml"], default="tree",
                     help="tree (default); wide adds StepRun, times and workload; json and "
                          "yaml print the StoryRun and its StepRuns (but fan-out items') as a "
                          "List, or with --items the page of items' StepRuns")
    get.add_argument("--items", metavar="STEP",
                     help="list the items of this fan-out step: index, phase, attempts, "
                          "duration, times, reason")
    get.add_argument("--limit", type=_positive, default=ITEMS_PAGE, metavar="N",
                     help=f"with --items: items a page (default {ITEMS_PAGE})")
    get.add_argument("--continue", dest="continue_", metavar="TOKEN",
                     help="with --items: the page this token starts (printed after a page)")
    get.add_argument("--phase", choices=[p.value for p in StepPhase],
                     help="with --items: only the items in this phase")
    add_login_flags(get)
    get.set_defaults(func=_get, usage_error=get.error)

    ls = sub.add_parser("list", help="list the runs of a namespace (or all: -A)",
                        description="List StoryRuns with phase, progress, reason and age.")
    ls.add_argument("-A", "--all-namespaces", action="store_true",
                    help="list the runs of every namespace")
    add_login_flags(ls)
    ls.set_defaults(func=_list)

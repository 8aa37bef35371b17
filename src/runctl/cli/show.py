"""`runctl get RUN` (one run as a tree) and `runctl list` (the runs of a namespace)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

from runctl.api.wire import GROUP, STORY_RUNS, VERSION
from runctl.cli import output, render
from runctl.cli.session import REQUEST_TIMEOUT, add_login_flags, connect
from runctl.cli.view import age, run_view


def _get(args: argparse.Namespace) -> int:
    session = connect(args)
    run = session.get_run(args.run)
    stepruns = session.list_stepruns(args.run)
    if args.output in ("json", "yaml"):
        # As `kubectl get sr,stpr -o json` would give them: the run, then its StepRuns.
        document = {"apiVersion": "v1", "kind": "List", "items": [run, *stepruns]}
        sys.stdout.write(json.dumps(document, indent=2) + "\n" if args.output == "json"
                         else yaml.safe_dump(document, sort_keys=False))
        return 0
    view = run_view(run, stepruns, output.now())
    output.show(render.run_tree(view, wide=args.output == "wide"))
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


def register(sub: Any) -> None:
    get = sub.add_parser(
        "get", help="show a run: its steps as a tree with phase, attempts, duration, reason",
        description="Show one StoryRun: a header (phase, reason, start, duration, stop) and "
                    "its steps in DAG order, each under the step it needs.")
    get.add_argument("run", help="the StoryRun's name")
    get.add_argument("-o", "--output", choices=["tree", "wide", "json", "yaml"], default="tree",
                     help="tree (default); wide adds StepRun, times and workload; json and "
                          "yaml print the StoryRun and its StepRuns as a List")
    add_login_flags(get)
    get.set_defaults(func=_get)

    ls = sub.add_parser("list", help="list the runs of a namespace (or all: -A)",
                        description="List StoryRuns with phase, progress, reason and age.")
    ls.add_argument("-A", "--all-namespaces", action="store_true",
                    help="list the runs of every namespace")
    add_login_flags(ls)
    ls.set_defaults(func=_list)

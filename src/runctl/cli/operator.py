"""`runctl operator` (run the operator) and `runctl crds` (print or write the CRDs)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from runctl.cli.session import Failed
from runctl.flow.items import MAX_ITEMS


def _operator(args: argparse.Namespace) -> int:
    from runctl.operator import login

    try:
        login.check()
    except login.LoginFailed as exc:
        raise Failed(str(exc)) from exc

    import kopf
    from prometheus_client import start_http_server

    import runctl.operator.handlers  # noqa: F401  (registers the handlers)
    from runctl.operator import settings

    namespaces = tuple(args.namespace or ())
    lease = None
    if args.leader_election_namespace:
        from runctl.operator.leader import default_identity

        lease = settings.Lease(args.leader_election_namespace, args.leader_election_name,
                               os.environ.get("RUNCTL_IDENTITY") or default_identity())
    settings.OPTIONS = settings.Options(
        namespaces=namespaces, lease=lease,
        webhook_port=args.webhook_port, webhook_host=args.webhook_host,
        webhook_cert_dir=Path(args.webhook_cert_dir), max_items=args.max_items,
    )
    if args.webhook_port:
        from runctl.operator import handlers, webhook

        def run(ns: str, name: str) -> tuple[bool, dict[str, Any] | None]:
            ctx = handlers.context()
            return not ctx.namespaces or ns in ctx.namespaces, ctx.cache.runs.get((ns, name))

        webhook.register(lambda ns, name: handlers.context().cache.get("Story", ns, name), run)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_address)
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=True,
        liveness_endpoint=args.liveness or None,
    )
    return 0


def _crds(args: argparse.Namespace) -> int:
    from runctl.api import crds

    if args.write:
        for path in crds.write(Path(args.write)):
            print(f"wrote {path}", file=sys.stderr)
    else:
        sys.stdout.write(crds.render_yaml())
    return 0


def _max_items(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if not 1 <= value <= MAX_ITEMS:
        raise argparse.ArgumentTypeError(f"must be a number from 1 to {MAX_ITEMS}, not {text!r}")
    return value


def register(sub: Any) -> None:
    op = sub.add_parser("operator", help="run the operator (kubeconfig or in-cluster login)")
    op.add_argument("-n", "--namespace", action="append",
                    help="watch only this namespace (repeatable); default: all namespaces")
    op.add_argument("--metrics-port", type=int, default=8080,
                    help="serve Prometheus metrics on this port (0: off)")
    op.add_argument("--metrics-address", default="0.0.0.0")
    op.add_argument("--liveness", default="http://0.0.0.0:8081/healthz",
                    help="kopf's liveness endpoint URL ('' to disable)")
    op.add_argument("--leader-election-namespace",
                    default=os.environ.get("RUNCTL_LEASE_NAMESPACE", ""),
                    help="elect one acting replica through a Lease in this namespace "
                         "(default: $RUNCTL_LEASE_NAMESPACE; empty: act alone)")
    op.add_argument("--leader-election-name",
                    default=os.environ.get("RUNCTL_LEASE_NAME", "runctl-leader"),
                    help="the Lease's name (default: $RUNCTL_LEASE_NAME or runctl-leader)")
    op.add_argument("--webhook-port", type=int, default=0,
                    help="serve the validating admission webhook on this port (0: off)")
    op.add_argument("--webhook-host", default="127.0.0.1",
                    help="the host or IP the API server reaches the webhook at")
    op.add_argument("--webhook-cert-dir", default="/tmp/runctl-webhook",
                    help="where the webhook's CA and serving certificate are kept")
    op.add_argument("--max-items", type=_max_items, default=MAX_ITEMS, metavar="N",
                    help="the most items a run's fan-outs may have together, known at run "
                         f"time (1 to {MAX_ITEMS}, the default; a literal list is held to "
                         f"{MAX_ITEMS} at apply)")
    op.add_argument("-v", "--verbose", action="store_true")
    op.set_defaults(func=_operator)

    crd = sub.add_parser("crds", help="print the CustomResourceDefinitions (or write them)")
    crd.add_argument("--write", metavar="DIR", help="write one YAML file per CRD into DIR")
    crd.set_defaults(func=_crds)

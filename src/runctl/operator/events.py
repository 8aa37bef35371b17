"""Kubernetes Events for what a person wants to see in `kubectl describe` and `get events`."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from runctl.api.wire import API_VERSION
from runctl.operator import kube
from runctl.timefmt import TIME_FORMAT

if TYPE_CHECKING:
    from kubernetes import client

COMPONENT = "runctl"
INSTANCE = socket.gethostname()


def event_for(obj: Mapping[str, Any], *, type: str, reason: str, message: str,
              now: dt.datetime) -> dict[str, Any]:
    meta = obj["metadata"]
    stamp = now.strftime(TIME_FORMAT)
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion", API_VERSION), "kind": obj["kind"],
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": type, "reason": reason, "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT, "reportingInstance": INSTANCE,
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }


async def post(core: client.CoreV1Api, kind: str, obj: Mapping[str, Any], *, type: str,
               reason: str, message: str, now: dt.datetime) -> None:
    """Post an Event about `obj` (of `kind`). Best effort: whether it was posted changes
    nothing else."""
    body = event_for({"apiVersion": API_VERSION, "kind": kind, **obj},
                     type=type, reason=reason, message=message, now=now)
    await kube.call("create", "events", core.create_namespaced_event,
                    obj["metadata"]["namespace"], body)

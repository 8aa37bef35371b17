"""Kubernetes Events for what a person wants to see in `kubectl describe` and `get events`."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Mapping
from typing import Any

from runctl.api.wire import API_VERSION

COMPONENT = "runctl"
INSTANCE = socket.gethostname()


def event_for(obj: Mapping[str, Any], *, type: str, reason: str, message: str,
              now: dt.datetime) -> dict[str, Any]:
    meta = obj["metadata"]
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
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

"""The admin's kubeconfig: the API server's address and the certificates inline, so the file
alone is enough for kubectl and for clients; readable by its owner only, since it holds a key."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from runctl import pki

CONTEXT = "runctl-local"


def write(path: Path, server: str, ca: pki.CertPair, user: pki.CertPair) -> None:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": CONTEXT,
        "clusters": [{"name": CONTEXT, "cluster": {
            "server": server, "certificate-authority-data": b64(ca.cert)}}],
        "users": [{"name": "admin", "user": {
            "client-certificate-data": b64(user.cert), "client-key-data": b64(user.key)}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": "admin"}}],
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)

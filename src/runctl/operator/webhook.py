"""The validating admission webhook: refuses at `kubectl apply` what the CRD schema cannot state.

CEL rules in the CRD already refuse duplicate names, unknown `needs` and self-dependencies; a
cycle through several steps needs a graph walk, which is done here with the same validation the
core applies on every reconcile (so a run that slips past a webhook that is down still ends
`Failed/InvalidSpec` having started nothing).

The serving certificate is made with `cryptography` (kopf's self-signed helper shells out to an
openssl that is not everywhere). kopf registers the ValidatingWebhookConfiguration itself, with
`failurePolicy: Ignore`: an operator that is down must not block every `kubectl apply`.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import kopf

from runctl import pki
from runctl.api import wire
from runctl.machine.dag import validate

CONFIGURATION_NAME = "runctl.dev"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def configure(settings: kopf.OperatorSettings, *, host: str, port: int, cert_dir: Path) -> None:
    """Serve admission reviews on `port`; the API server reaches them at https://host:port."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    ca = pki.CertPair(cert_dir / "runctl-webhook-ca.crt", cert_dir / "runctl-webhook-ca.key")
    if not ca.cert.exists():
        ca = pki.make_ca(cert_dir, "runctl-webhook-ca")
    serving = pki.issue(
        ca, cert_dir, "webhook", common_name=host, server=True,
        ips=(host,) if _is_ip(host) else (), dns=() if _is_ip(host) else (host,),
    )
    settings.admission.server = kopf.WebhookServer(
        addr="0.0.0.0", port=port, host=host,
        certfile=str(serving.cert), pkeyfile=str(serving.key), cafile=str(ca.cert),
    )
    settings.admission.managed = CONFIGURATION_NAME


def register() -> None:
    """Register the StoryRun validation handler (only when the webhook is served)."""

    @kopf.on.validate("runctl.dev", "v1alpha1", "storyruns", operations=["CREATE", "UPDATE"],
                      ignore_failures=True, id="storyrun-dag")
    def validate_storyrun(spec: kopf.Spec, **_: Any) -> None:
        problems = validate(wire.run_spec(spec))
        if problems:
            raise kopf.AdmissionError("; ".join(str(p) for p in problems), code=422)

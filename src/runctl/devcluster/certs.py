"""The local control plane's certificates, made with `runctl.pki` in one directory.

One CA signs them all: the API server's serving certificate, the admin's client certificate (in
the kubeconfig), and the client certificate the API server shows a real node's kubelet (logs,
exec); a node that joins later is signed by the same CA (`ca`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runctl import pki

CA_NAME = "runctl-local-ca"


@dataclass(frozen=True)
class Certs:
    directory: Path
    ca: pki.CertPair
    apiserver: pki.CertPair
    admin: pki.CertPair
    service_accounts: pki.CertPair
    kubelet_client: pki.CertPair


def make(directory: Path) -> Certs:
    """Make the CA and every certificate and key the control plane's processes are given."""
    ca = pki.make_ca(directory, CA_NAME)
    apiserver = pki.issue(
        ca, directory, "apiserver", common_name="kube-apiserver", server=True,
        dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
        ips=("127.0.0.1", "10.96.0.1"),
    )
    admin = pki.issue(ca, directory, "admin", common_name="admin", org="system:masters",
                      client=True)
    service_accounts = pki.make_service_account_keys(directory)
    kubelet_client = pki.issue(ca, directory, "kubelet-client",
                               common_name="kube-apiserver-kubelet-client",
                               org="system:masters", client=True)
    return Certs(directory, ca, apiserver, admin, service_accounts, kubelet_client)


def ca(directory: Path) -> pki.CertPair:
    """The CA `make` made in `directory`."""
    return pki.CertPair(directory / f"{CA_NAME}.crt", directory / f"{CA_NAME}.key")

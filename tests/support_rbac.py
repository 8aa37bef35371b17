"""RBAC helpers for integration tests: act as a user or a ServiceAccount, ask what it may do.

- `user_kubeconfig` issues a client certificate signed by the control plane's CA for a user and
  writes a kubeconfig holding it: a real user, authenticated as any person would be;
- `service_account_kubeconfig` mints a token for a ServiceAccount (TokenRequest API, as
  `kubectl create token` does) and writes a kubeconfig holding it, so a process run with it
  (`runctl operator`, kubectl) has exactly that account's permissions;
- `can` asks the API server (SubjectAccessReview) whether an account may do one thing, with the
  same groups the account's own token carries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runctl import pki
from runctl.devcluster import ControlPlane


def service_account_user(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def service_account_kubeconfig(cluster: ControlPlane, namespace: str, name: str, path: Path,
                               *, duration: str = "2h", default_namespace: str | None = None,
                               ) -> Path:
    """Write to `path` a kubeconfig that authenticates as ServiceAccount `namespace/name`.

    The server and its CA come from the cluster's admin kubeconfig; the credential is a bound
    token for the ServiceAccount (it stops working when the account is deleted)."""
    token = cluster.kubectl("create", "token", name, "-n", namespace,
                            f"--duration={duration}").stdout.strip()
    admin: dict[str, Any] = yaml.safe_load(cluster.kubeconfig.read_text())
    current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    server = next(c for c in admin["clusters"] if c["name"] == current["context"]["cluster"])
    user = f"{namespace}-{name}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": server["name"], "cluster": _absolute(server["cluster"],
                                                                   cluster.kubeconfig.parent)}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {
            "cluster": server["name"], "user": user,
            "namespace": default_namespace or namespace}}],
        "current-context": user,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def user_kubeconfig(cluster: ControlPlane, user: str, path: Path,
                    *, namespace: str = "default") -> Path:
    """Write to `path` a kubeconfig that authenticates as `user` by a client certificate from
    the cluster's own CA: the API server knows the user by the certificate's common name, as it
    would a real person (and grants it nothing but what RBAC binds to that name)."""
    ca = pki.CertPair(cluster.workdir / "pki" / "runctl-local-ca.crt",
                      cluster.workdir / "pki" / "runctl-local-ca.key")
    path.parent.mkdir(parents=True, exist_ok=True)
    pair = pki.issue(ca, path.parent, f"{path.stem}-client", common_name=user,
                     client=True)
    admin: dict[str, Any] = yaml.safe_load(cluster.kubeconfig.read_text())
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": user, "user": {"client-certificate": str(pair.cert),
                                          "client-key": str(pair.key)}}],
        "contexts": [{"name": user, "context": {"cluster": admin["clusters"][0]["name"],
                                                "user": user, "namespace": namespace}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _absolute(cluster: dict[str, Any], base: Path) -> dict[str, Any]:
    """File references in a kubeconfig are relative to it: keep them valid from anywhere."""
    result = dict(cluster)
    ca = result.get("certificate-authority")
    if ca and not Path(ca).is_absolute():
        result["certificate-authority"] = str(base / ca)
    return result


@dataclass(frozen=True)
class Access:
    """One thing to ask about: `verb` on `group`/`resource`[/`subresource`] (`name`) in `namespace`
    (None: cluster-wide, or every namespace for a namespaced resource)."""

    verb: str
    resource: str
    group: str = ""
    subresource: str = ""
    namespace: str | None = None
    name: str = ""

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else " cluster-wide"
        res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        named = f" {self.name}" if self.name else ""
        return f"{self.verb} {res}.{self.group or 'core'}{named}{where}"


def can(cluster: ControlPlane, user: str, access: Access) -> bool:
    """Whether `user` may do `access`, as the API server's authorizer decides it."""
    groups = ["system:authenticated"]
    if user.startswith("system:serviceaccount:"):
        namespace = user.split(":")[2]
        groups += ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
    attributes = {k: v for k, v in {
        "verb": access.verb, "group": access.group, "resource": access.resource,
        "subresource": access.subresource, "namespace": access.namespace or "",
        "name": access.name}.items() if v}
    review = {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": groups, "resourceAttributes": attributes},
    }
    api = _authorization(cluster)
    response = api.create_subject_access_review(review, _preload_content=False)
    allowed: bool = json.loads(response.data)["status"].get("allowed", False)
    return allowed


_APIS: dict[Path, Any] = {}


def _authorization(cluster: ControlPlane) -> Any:
    """One admin client per control plane (a kubectl process per question is slow)."""
    from kubernetes import client

    if cluster.kubeconfig not in _APIS:
        _APIS[cluster.kubeconfig] = client.AuthorizationV1Api(cluster.api_client())
    return _APIS[cluster.kubeconfig]


def refused(cluster: ControlPlane, user: str, accesses: list[Access]) -> list[str]:
    """The ones of `accesses` that `user` may not do."""
    return [str(a) for a in accesses if not can(cluster, user, a)]


def allowed(cluster: ControlPlane, user: str, accesses: list[Access]) -> list[str]:
    """The ones of `accesses` that `user` may do."""
    return [str(a) for a in accesses if can(cluster, user, a)]

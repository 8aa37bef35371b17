"""Logging in the way kubectl does, and finding out at once whether it works.

The operator logs in with the in-cluster service account when it runs in a pod, else with the
kubeconfig named by `$KUBECONFIG` (or `~/.kube/config`); a person's command may name the
kubeconfig and the context instead, as kubectl's `--kubeconfig` and `--context` do. `load()` is
that one login, for whoever needs a client; `check()` also asks the API server for `/version`
with a short timeout, so that a missing or garbled kubeconfig or an API server nobody can reach
is reported in one sentence that names what was tried, before anything starts, instead of
surfacing later as retries that never end.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

CHECK_SECONDS = 5.0
"""How long connecting to the API server, and then its answer, may each take at start-up."""


class LoginFailed(Exception):
    """The operator cannot log in; the message is one line saying what was tried and why not."""


@dataclass(frozen=True)
class Login:
    configuration: client.Configuration
    source: str
    """Where the login came from, as a person would name it."""
    namespace: str = "default"
    """The namespace a command acts in when it names none: the context's, or the pod's."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _kubeconfig(explicit: str | None = None) -> tuple[str, str]:
    """The kubeconfig path(s) the kubernetes client reads, and how to name them."""
    if explicit:
        return explicit, explicit
    if os.environ.get("KUBECONFIG"):
        paths = os.environ["KUBECONFIG"]
        return paths, f"$KUBECONFIG {paths}"
    path = str(Path("~/.kube/config").expanduser())
    return path, path


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _context_namespace(paths: str, context: str | None) -> str:
    contexts, current = config.list_kube_config_contexts(config_file=paths)
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return namespace if isinstance(namespace, str) and namespace else "default"


def load(kubeconfig: str | None = None, context: str | None = None) -> Login:
    """The in-cluster service account, else the kubeconfig; `LoginFailed` if neither loads.

    A kubeconfig or context named by the caller is used even in a pod, as kubectl would."""
    cfg = client.Configuration()
    if kubeconfig is None and context is None:
        with contextlib.suppress(config.ConfigException):
            config.load_incluster_config(client_configuration=cfg)
            namespace = "default"
            with contextlib.suppress(OSError):
                namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or namespace
            return Login(cfg, "the in-cluster service account", namespace)
    paths, source = _kubeconfig(kubeconfig)
    if not any(Path(p).expanduser().is_file() for p in paths.split(os.pathsep) if p):
        where = "" if kubeconfig else "not running in a pod, and "
        raise LoginFailed(f"no cluster to log in to: {where}no kubeconfig at {source}")
    try:
        config.load_kube_config(config_file=paths, context=context, client_configuration=cfg)
        namespace = _context_namespace(paths, context)
    except (config.ConfigException, yaml.YAMLError, OSError) as exc:
        raise LoginFailed(f"cannot read the kubeconfig {source}: {_one_line(exc)}") from exc
    except Exception as exc:  # the loader trips over YAML that is not a kubeconfig's shape
        raise LoginFailed(f"cannot read the kubeconfig {source}: not a kubeconfig "
                          f"({type(exc).__name__}: {_one_line(exc)})") from exc
    return Login(cfg, source, namespace)


def _chain(exc: BaseException) -> list[BaseException]:
    """An exception and those it wraps (urllib3 keeps the inner one in `reason`)."""
    found: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in found:
        found.append(seen)
        inner = getattr(seen, "reason", None)
        seen = inner if isinstance(inner, BaseException) else seen.__cause__ or seen.__context__
    return found


def _reason(exc: BaseException) -> str:
    """Why a request failed, in the fewest words: the innermost OS error if there is one.

    Timeouts are looked for only after that, because urllib3's NewConnectionError (a refused
    connection, an unknown name) is a subclass of its ConnectTimeoutError."""
    chain = _chain(exc)
    for seen in reversed(chain):
        if isinstance(seen, OSError) and isinstance(seen.strerror, str) and seen.strerror:
            return seen.strerror[:1].lower() + seen.strerror[1:]
    if any(isinstance(seen, urllib3.exceptions.TimeoutError | TimeoutError) for seen in chain):
        return f"no answer within {CHECK_SECONDS:g} s"
    return _one_line(exc)


def check(kubeconfig: str | None = None, context: str | None = None) -> Login:
    """Load the login and ask the API server for its version; `LoginFailed` says why not."""
    login = load(kubeconfig, context)
    where = f"the API server at {login.configuration.host} (from {login.source})"
    probe = copy.deepcopy(login.configuration)
    probe.retries = False  # one try: what it tried and why it failed, not a retry's warning
    api = client.ApiClient(probe)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            response: Any = client.VersionApi(api).get_code(  # raw: judged below
                _request_timeout=(CHECK_SECONDS, CHECK_SECONDS), _preload_content=False)
            body = response.data
    except ApiException as exc:
        if exc.status in (401, 403):
            raise LoginFailed(f"{where} refused the credentials: {exc.status} {exc.reason}"
                              ) from exc
        raise LoginFailed(f"{where} answered {exc.status} {exc.reason}") from exc
    except Exception as exc:  # connection refused, timeouts, TLS, names: all mean "cannot reach"
        raise LoginFailed(f"cannot reach {where}: {_reason(exc)}") from exc
    finally:
        api.close()
    try:
        version = json.loads(body).get("gitVersion")
    except (ValueError, AttributeError):
        version = None
    if not isinstance(version, str):
        raise LoginFailed(f"{where} answered /version, but not as a Kubernetes API server does")
    return login

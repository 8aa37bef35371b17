"""A person's login to the cluster, and the API's refusals said in one line.

Commands log in as kubectl does (`--kubeconfig`, `--context`, `-n`, the context's namespace by
default) through the operator's own login, which also asks the API server for `/version` first:
no kubeconfig, a cluster nobody can reach or credentials it refuses are reported before the
command does anything. What the API server refuses later (an unknown run, a missing permission,
CRDs that were never installed) becomes a `Failed` naming the run and the namespace.
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from runctl.api.wire import API_VERSION, GROUP, STEP_RUNS, STORY_RUNS, VERSION
from runctl.cli.fanout import items_selector, steps_selector
from runctl.operator import login

REQUEST_TIMEOUT = (5.0, 30.0)
"""Connect and read timeouts of a one-off request (watches set their own)."""


class Failed(Exception):
    """A failure whose message already says, in one line, what was tried and why it failed."""


@dataclass(frozen=True)
class Session:
    api: client.ApiClient
    namespace: str
    """The namespace named by `-n`, else the context's."""

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def get(self, kind: str, plural: str, name: str) -> dict[str, Any]:
        """The runctl object `name` of `plural` (a `kind` to people), or `Failed` saying why
        it cannot be read."""
        try:
            found: Any = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            raise self.refused(exc, f"{kind} {name}") from exc
        result: dict[str, Any] = found
        return result

    def get_run(self, name: str) -> dict[str, Any]:
        return self.get("storyrun", STORY_RUNS, name)

    def list_stepruns(self, run: str) -> list[dict[str, Any]]:
        """The run's StepRuns but its fan-out items' (the run's record counts those)."""
        try:
            found: Any = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, STEP_RUNS,
                label_selector=steps_selector(run), _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            raise self.refused(exc, f"the stepruns of {run}") from exc
        items: list[dict[str, Any]] = found.get("items", [])
        return items

    def list_items(self, run: str, step: str, limit: int, token: str | None
                   ) -> tuple[list[dict[str, Any]], str]:
        """One page of a fan-out step's item StepRuns, in the API server's order (by name),
        and the token of the next page ("" after the last)."""
        try:
            found: Any = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, STEP_RUNS,
                label_selector=items_selector(run, step), limit=limit,
                _continue=token, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 410:
                raise Failed(f"the page of the items of {step} of {run} has expired (the "
                             f"server keeps a page token a few minutes): list from the "
                             f"start, without --continue") from exc
            raise self.refused(exc, f"the items of {step} of {run}") from exc
        items: list[dict[str, Any]] = found.get("items", [])
        return items, (found.get("metadata") or {}).get("continue") or ""

    def installed(self) -> bool:
        """Whether the API server serves runctl's kinds (the CRDs are installed)."""
        try:
            self.custom.get_api_resources(GROUP, VERSION, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def refused(self, exc: ApiException, what: str) -> Failed:
        """The one line a person reads when the API server refused a request about `what`."""
        where = f"in namespace {self.namespace}"
        if exc.status == 404:
            if not self.installed():
                return Failed(f"this cluster does not serve {API_VERSION} StoryRuns: runctl's "
                              "CRDs are not installed (kubectl apply -f crds/, or helm install "
                              "runctl deploy/helm/runctl)")
            return Failed(f"{what} not found {where}")
        if exc.status == 403:
            return Failed(f"no permission for {what} {where}: {api_message(exc)}")
        if exc.status == 401:
            return Failed("the API server refused the credentials: 401 Unauthorized")
        return Failed(f"the API server refused {what} {where}: {exc.status} "
                      f"{api_message(exc)}")


def api_message(exc: ApiException) -> str:
    """The API server's own sentence (a Status object's message), else its HTTP reason."""
    try:
        message = json.loads(exc.body or "").get("message")
    except (ValueError, AttributeError):
        message = None
    return " ".join(str(message or exc.reason or "").split())


def add_login_flags(parser: argparse.ArgumentParser) -> None:
    """kubectl's login flags, with kubectl's names and meaning."""
    parser.add_argument("--kubeconfig", help="the kubeconfig to use (default: $KUBECONFIG, "
                        "else ~/.kube/config)")
    parser.add_argument("--context", help="the kubeconfig context to use (default: current)")
    parser.add_argument("-n", "--namespace",
                        help="the namespace (default: the context's namespace, else default)")


def connect(args: argparse.Namespace) -> Session:
    """Log in from the command's flags; `Failed` in one line when that is not possible."""
    try:
        found = login.check(args.kubeconfig, args.context)
    except login.LoginFailed as exc:
        raise Failed(str(exc)) from exc
    cfg = copy.deepcopy(found.configuration)
    cfg.retries = False  # a person's command fails in one line instead of logging retries
    return Session(client.ApiClient(cfg), args.namespace or found.namespace)

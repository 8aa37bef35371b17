"""The validating admission webhook: refuses at `kubectl apply` what the CRD schema cannot state.

CEL rules in the CRD already refuse duplicate names, unknown `needs` and self-dependencies; a
cycle through several steps needs a graph walk, and params, references and conditions need
`runctl.flow`. Both are done here with the same checks the operator makes before a run starts
(so a run that slips past a webhook that is down still ends `Failed/InvalidSpec` having started
nothing). A Story is checked as a run's inline steps are; a run of a Story has its params
checked against the Story the operator has seen (a Story not seen yet is checked when the run
resolves it); a re-run is checked against its source as the operator has seen it.

The serving certificate is made with `cryptography` (kopf's self-signed helper shells out to an
openssl that is not everywhere). kopf registers the ValidatingWebhookConfiguration itself, with
`failurePolicy: Ignore`: an operator that is down must not block every `kubectl apply`.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import kopf

from runctl import pki
from runctl.api import wire
from runctl.api.wire import GROUP, STORIES, STORY_RUNS, VERSION
from runctl.flow import definition, params
from runctl.machine.dag import Problem, parallelism_problems, validate
from runctl.operator import rerun

log = logging.getLogger(__name__)

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


def story_problems(spec: dict[str, Any]) -> list[Problem]:
    """What is wrong with a Story's spec: its graph, params, references and conditions."""
    return [*definition.check(spec), *validate(wire.run_spec({}, spec))]


Stories = Callable[[str, str], dict[str, Any] | None]
"""The Story of this namespace and name, as the operator has seen it (None: not seen)."""
Runs = Callable[[str, str], tuple[bool, dict[str, Any] | None]]
"""Whether the operator watches this namespace, and the StoryRun of this name there as it has
seen it (None: there is none)."""


def run_problems(spec: dict[str, Any], namespace: str, stories: Stories,
                 runs: Runs) -> list[Problem]:
    """What is wrong with a StoryRun's spec: inline, as a Story's; of a Story, its params
    against the Story's declarations and its own parallelism against the Story's mode, if the
    Story has been seen; a re-run, against its source, in a namespace the operator watches
    (elsewhere it cannot tell a run missing from one it does not see)."""
    source = wire.rerun_of(spec)
    if source is not None:
        watched, found = runs(namespace, source)
        if not watched:
            return []
        checked, problems = rerun.check(spec, namespace, found)
        return problems + (_parallelism(spec, checked.spec) if checked is not None else [])
    name = wire.story_ref(spec)
    if name is None:
        return [*definition.check(spec), *validate(wire.run_spec(spec))]
    story = stories(namespace, name)
    if story is None:
        return []
    return [*params.check_run(story["spec"], spec.get("params")),
            *_parallelism(spec, story["spec"])]


def _parallelism(spec: dict[str, Any], executes: Mapping[str, Any]) -> list[Problem]:
    """A run's own `parallelism` beside the definition it executes (a realtime one refuses
    it): the CRD's rule sees only the run's own mode."""
    if spec.get("parallelism") is None:
        return []
    return parallelism_problems(wire.run_spec(spec, executes))


HANDLERS = ("storyrun-spec", "story-spec")
"""The ids of the validation handlers, whose refusals kopf would log as errors."""


class RefusalsAreNotErrors(logging.Filter):
    """kopf logs a validation handler's refusal as an error ("Webhook 'story-spec' failed
    permanently"); a refused object is the webhook doing its job, logged at INFO by
    `_refuse` instead, so that errors in the operator's log are the operator's own."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("failed permanently" in message
                    and any(f"Webhook {h!r}" in message for h in HANDLERS))


def _refuse(problems: list[Problem], kind: str, namespace: str | None, name: str | None
            ) -> None:
    if problems:
        message = "; ".join(str(p) for p in problems)
        log.info("refused %s %s/%s: %s", kind, namespace or "", name or "", message)
        raise kopf.AdmissionError(message, code=422)


def register(stories: Stories, runs: Runs) -> None:
    """Register the Story and StoryRun validation handlers (only when the webhook is served)."""

    @kopf.on.validate(GROUP, VERSION, STORY_RUNS, operations=["CREATE"],
                      ignore_failures=True, id="storyrun-spec")
    def validate_storyrun(spec: kopf.Spec, namespace: str | None, name: str | None, **_: Any
                          ) -> None:
        _refuse(run_problems(dict(spec), namespace or "", stories, runs), "StoryRun",
                namespace, name)

    @kopf.on.validate(GROUP, VERSION, STORIES, operations=["CREATE", "UPDATE"],
                      ignore_failures=True, id="story-spec")
    def validate_story(spec: kopf.Spec, namespace: str | None, name: str | None, **_: Any
                       ) -> None:
        _refuse(story_problems(dict(spec)), "Story", namespace, name)

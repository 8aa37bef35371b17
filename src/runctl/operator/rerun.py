"""A re-run resolved: its source read from the cache, the re-run checked against it, and what it
executes and reuses decided, to be recorded once before anything of it starts.

The source is only ever read. What the re-run executes is the source's recorded definition (or
its inline spec) with the source's params and the re-run's over them; which steps it reuses is
the core's rule (`runctl.machine.reuse`) on what the shell reads of the source: each main step's
record, its StepRun, and the inputs digest the re-run's step renders to on the source's outputs.
The webhook makes the same checks at apply (`check`), so a bad re-run is refused naming the
field, or, where the webhook is off, ends `InvalidSpec` with the same words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runctl.api import wire
from runctl.api.spec import StorySpec
from runctl.flow import definition as flow
from runctl.flow import inputs, params, references
from runctl.machine import model as m
from runctl.machine import reuse
from runctl.machine.dag import Problem
from runctl.machine.naming import item_key
from runctl.machine.phases import RUN_TERMINAL, StepPhase
from runctl.operator.cache import ObjectCache, owned_by
from runctl.operator.memo import Bounded

Obj = Mapping[str, Any]

DEFINITION_FIELDS = frozenset(f.alias or name for name, f in StorySpec.model_fields.items())
"""What of an inline source's spec is its definition (all but cancelRequested and the rest)."""


@dataclass(frozen=True)
class Source:
    """The run a re-run runs again, and what it executes."""

    run: Obj
    spec: Obj
    """The definition: the source's recorded one, or its inline spec."""
    params: dict[str, Any]
    """The re-run's params: the source's values with the re-run's over them, checked."""


def _definition(source: Obj) -> tuple[Obj, Mapping[str, Any]] | None:
    """What the source executed, and with which params (None: it never resolved its Story)."""
    status = source.get("status") or {}
    if "resolved" in status:
        return status["resolved"]["spec"], status["resolved"].get("params") or {}
    if source["spec"].get("steps"):
        return {k: v for k, v in source["spec"].items() if k in DEFINITION_FIELDS}, {}
    return None


def check(spec: Obj, namespace: str, source: Obj | None) -> tuple[Source | None, list[Problem]]:
    """The source of a re-run (None if there is none to run again) and what is wrong with the
    re-run: a namespace not its own, a source missing, not terminal or with no definition, a
    `from` step the definition does not have, params that do not fit its declarations."""
    name = wire.rerun_of(spec) or ""
    asked = (spec.get("rerunOf") or {}).get("namespace")
    if asked is not None and asked != namespace:
        return None, [Problem("spec.rerunOf.namespace", f"must be the run's own namespace, "
                              f"{namespace}: a run re-runs only runs of its namespace")]
    if source is None:
        return None, [Problem("spec.rerunOf.name",
                              f"run {name} not found in namespace {namespace}")]
    phase = (source.get("status") or {}).get("phase")
    if phase not in RUN_TERMINAL:
        return None, [Problem("spec.rerunOf.name", f"run {name} is {phase or 'not started'}: "
                              "only a terminal run can run again")]
    found = _definition(source)
    if found is None:
        return None, [Problem("spec.rerunOf.name", f"run {name} ended before it resolved its "
                              "Story: it has no definition to run again")]
    definition, given = found
    names = {s["name"] for key in ("steps", "finally") for s in definition.get(key) or ()}
    problems = [Problem(f"spec.rerun.from[{i}]", f'"{step}" is not a step of run {name}')
                for i, step in enumerate(_from(spec)) if step not in names]
    values, bad = params.resolve(params.declared(definition.get("params")),
                                 {**given, **(spec.get("params") or {})})
    return Source(source, definition, values), problems + bad


def _from(spec: Obj) -> list[str]:
    return list((spec.get("rerun") or {}).get("from") or ())


@dataclass(frozen=True)
class Resolution:
    spec: Obj | None
    params: Mapping[str, Any] = field(default_factory=dict)
    record: dict[str, Any] | None = None
    """`status.story` (the source's, if it ran a Story), `status.resolved`, `status.rerun`."""
    problems: list[Problem] = field(default_factory=list)


def resolve(cache: ObjectCache, run: Obj) -> Resolution:
    """What a re-run executes and reuses, from its source as the cache holds it."""
    ns, name = run["metadata"]["namespace"], wire.rerun_of(run["spec"]) or ""
    source, problems = check(run["spec"], ns, cache.runs.get((ns, name)))
    if source is None:
        return Resolution(None, problems=problems)
    here = f"run {name}: spec"
    problems += flow.check(source.spec, here)
    if not problems:
        problems += flow.trial_render(source.spec, source.params, here)
    if problems:
        return Resolution(source.spec, source.params, problems=problems)
    reused = reuse.reused(wire.run_spec(run["spec"], source.spec), name,
                          _read(cache, source), _from(run["spec"]))
    status = source.run.get("status") or {}
    record = {**({"story": status["story"]} if "story" in status else {}),
              "resolved": {"params": source.params, "spec": source.spec},
              "rerun": wire.rerun_record(source.run, reused)}
    return Resolution(source.spec, source.params, record)


def _read(cache: ObjectCache, source: Source) -> dict[str, reuse.SourceStep]:
    """Each main step of the source as the reuse rule reads it: its record, its StepRun (the
    source's own, still there), the digest recorded on it and the digest the re-run's step
    renders to on the source's outputs."""
    meta = source.run["metadata"]
    run_status = wire.parse_run_status(source.run.get("status"))
    # Keyed as the core keys them: a fan-out step has no StepRun of its own (each item has
    # one), so it is never reused whole: a re-run executes it again, and the steps below it.
    step_runs = {wire.key_of(sr["metadata"]["labels"]): sr
                 for sr in cache.children("StepRun", (meta["namespace"], meta["name"]))
                 if owned_by(sr, meta["uid"])}
    statuses = {step: wire.parse_steprun_status(sr.get("status"))
                for step, sr in step_runs.items()}
    outputs = {step: dict(s.outputs) for step, s in statuses.items()
               if s is not None and s.phase is StepPhase.SUCCEEDED}
    out: dict[str, reuse.SourceStep] = {}
    for step in source.spec.get("steps") or ():
        recorded = m.step_state(run_status, step["name"])
        sr = step_runs.get(step["name"])
        out[step["name"]] = reuse.SourceStep(
            phase=recorded.phase if recorded is not None else StepPhase.PENDING,
            step_run=sr["metadata"]["name"] if sr is not None else None,
            uid=sr["metadata"]["uid"] if sr is not None else "",
            status=statuses.get(step["name"]),
            recorded_digest=sr["spec"].get("inputsDigest") if sr is not None else None,
            digest=_digest(step, source.params, outputs))
    return out


def _digest(step: Obj, values: Mapping[str, Any], outputs: Mapping[str, Mapping[str, str]],
            facts: references.Facts | None = None, item: references.Item | None = None
            ) -> str | None:
    """The digest of the step (or of one item of it) as the re-run would make it from the
    source's outputs (None: it reads one the source did not make, or renders to nothing
    usable)."""
    try:
        rendered = references.render_step(step, values, outputs, facts, item)
    except (KeyError, references.Malformed):
        return None
    return inputs.inputs_digest(rendered, values, outputs, facts, item)


@dataclass(frozen=True)
class FanOut:
    """A fan-out step of a re-run, about to have items made: what the reuse rule reads."""

    step: Obj
    values: tuple[Any, ...]
    """Its items, as the re-run has them."""
    unmade: frozenset[int]
    """The indexes of its items with no StepRun yet (or one whose status never landed)."""


def reused_items(cache: ObjectCache, run: Obj, spec: m.RunSpec, params: Mapping[str, Any],
                 outputs: Mapping[str, Mapping[str, str]], fan_outs: list[FanOut],
                 reused_steps: set[str]) -> tuple[tuple[str, m.Reuse], ...]:
    """The items not made yet of a recorded re-run's fan-out steps that it reuses
    (`reuse.reused_items`), by key, read from the source's item StepRuns as the cache holds
    them when the items are first about to be made (decided once per step): each whose
    digest, rendered with its own item and index on the outputs the re-run offers (those the
    source made, every step the fan-out needs being reused), equals the one its source item of
    the same index recorded, and that succeeded there. Nothing when the source is gone (or is
    another run of the same name)."""
    record = (run.get("status") or {}).get("rerun")
    if record is None or not fan_outs:
        return ()
    ns, name = run["metadata"]["namespace"], record["source"]["name"]
    source = cache.runs.get((ns, name))
    if source is None or source["metadata"]["uid"] != record["source"]["uid"]:
        return ()
    out: list[tuple[str, m.Reuse]] = []
    for fan in fan_outs:
        key = (run["metadata"].get("uid", ""), fan.step["name"])
        decided = _ITEMS.get(key)
        if decided is None:
            decided = _ITEMS[key] = dict(reuse.reused_items(
                spec, fan.step["name"], name, _source_items(cache, source, fan, params, outputs),
                _from(run["spec"]), reused_steps))
        out += [(item_key(fan.step["name"], i), r) for i, r in sorted(decided.items())
                if i in fan.unmade]
    return tuple(out)


_ITEMS: Bounded[tuple[str, str], dict[int, m.Reuse]] = Bounded()
"""Which items of a re-run's fan-out step it reuses, by (run uid, step): decided once, the
first time its items are about to be made (the digests of thousands of items are not rendered
again at every decision while the rest of them wait for their turn)."""


def _source_items(cache: ObjectCache, source: Obj, fan: FanOut, params: Mapping[str, Any],
                  outputs: Mapping[str, Mapping[str, str]]) -> list[reuse.SourceStep | None]:
    """The source's item of each index the re-run's step has, as the reuse rule reads it."""
    meta = source["metadata"]
    by_key = {wire.key_of(sr["metadata"]["labels"]): sr
              for sr in cache.children("StepRun", (meta["namespace"], meta["name"]))
              if owned_by(sr, meta["uid"])}
    found: list[reuse.SourceStep | None] = []
    for index, value in enumerate(fan.values):
        sr = by_key.get(item_key(fan.step["name"], index))
        status = wire.parse_steprun_status(sr.get("status")) if sr is not None else None
        if sr is None or status is None:
            found.append(None)
            continue
        found.append(reuse.SourceStep(
            phase=status.phase, step_run=sr["metadata"]["name"], uid=sr["metadata"]["uid"],
            status=status, recorded_digest=sr["spec"].get("inputsDigest"),
            digest=_digest(fan.step, params, outputs, None, references.Item(index, value))))
    return found

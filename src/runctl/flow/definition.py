"""A run's definition (a Story's spec, or a StoryRun's inline one) checked whole, and what each
step consumes.

References and conditions add edges to the DAG: a step that reads another's output needs it,
whether or not its `needs` says so. The checks here name the field (`spec.steps[2].args[0]`)
and run at apply (webhook) and again before a run starts (a run that got past a webhook that
was off ends `InvalidSpec` with the same words).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runctl.flow import conditions, params, references
from runctl.flow.references import Malformed, Ref
from runctl.machine.dag import Problem

Step = Mapping[str, Any]


def step_refs(step: Step) -> list[tuple[str, Ref]]:
    """(field under the step, reference) for every reference in the step's fields and its
    condition. Malformed references are skipped (`check` reports them)."""
    out: list[tuple[str, Ref]] = []
    for where, text in references.fields(step):
        try:
            out += [(where, r) for r in references.find(text)]
        except Malformed:
            continue
    if step.get("when"):
        out += [("when", r) for r in conditions.references(step["when"])]
    return out


def consumes(step: Step) -> tuple[tuple[str, str], ...]:
    """(producer, output) pairs the step reads, sorted, each once."""
    return tuple(sorted({(r.step, r.name) for _, r in step_refs(step) if r.step is not None}))


def needs(step: Step) -> tuple[str, ...]:
    """The step's needs: those it names, then the producers it reads that it does not name."""
    named = list(step.get("needs") or ())
    return (*named, *sorted({p for p, _ in consumes(step)} - set(named)))


def _upstream(steps: Sequence[Step]) -> dict[str, set[str]]:
    """Every step's transitive needs, implied ones included (a cycle leaves a step upstream of
    itself)."""
    direct = {s["name"]: set(needs(s)) for s in steps}
    out: dict[str, set[str]] = {}
    for name in direct:
        found: set[str] = set()
        todo = list(direct[name])
        while todo:
            n = todo.pop()
            if n not in found:
                found.add(n)
                todo += direct.get(n, ())
        out[name] = found
    return out


def _step_problems(step: Step, here: str, decls: Mapping[str, params.Param],
                   declared: Mapping[str, frozenset[str]], upstream: Mapping[str, set[str]],
                   realtime: bool) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for j, out in enumerate(step.get("outputs") or ()):
        if out["name"] in seen:
            problems.append(Problem(f"{here}.outputs[{j}].name",
                                    f'output "{out["name"]}" declared twice'))
        seen.add(out["name"])
    if realtime and step.get("outputs"):
        problems.append(Problem(f"{here}.outputs", "a realtime step has no outputs"))
    for where, text in references.fields(step):
        try:
            refs = references.find(text)
        except Malformed as e:
            problems.append(Problem(f"{here}.{where}", str(e)))
            continue
        problems += [Problem(f"{here}.{where}", why) for r in refs
                     if (why := _ref_problem(r, step["name"], decls, declared, upstream,
                                             realtime))]
    when = step.get("when")
    if when and realtime:
        problems.append(Problem(f"{here}.when", "conditions are for batch runs"))
    elif when:
        try:
            conditions.check(when, decls, declared)
        except conditions.Invalid as e:
            problems.append(Problem(f"{here}.when", str(e)))
        else:
            problems += [Problem(f"{here}.when", why) for r in conditions.references(when)
                         if (why := _ref_problem(r, step["name"], decls, declared, upstream,
                                                 realtime))]
    return problems


def _ref_problem(ref: Ref, consumer: str, decls: Mapping[str, params.Param],
                 declared: Mapping[str, frozenset[str]], upstream: Mapping[str, set[str]],
                 realtime: bool) -> str | None:
    if ref.step is None:
        return None if ref.name in decls else f'unknown param "{ref.name}"'
    if realtime:
        return f"{ref}: a realtime step cannot reference outputs (its upstreams do not end)"
    if ref.step not in declared:
        return f'unknown step "{ref.step}" in {ref}'
    if ref.name not in declared[ref.step]:
        return f'step "{ref.step}" declares no output "{ref.name}" ({ref})'
    if ref.step == consumer or consumer in upstream.get(ref.step, ()):
        return (f'{ref}: step "{ref.step}" is not upstream of "{consumer}" (reading it would '
                "make a cycle)")
    return None


def check(spec: Mapping[str, Any], field: str = "spec") -> list[Problem]:
    """Every problem of a definition's params, outputs, references and conditions (the DAG's
    own shape is `runctl.machine.dag.validate`'s)."""
    steps = list(spec.get("steps") or ())
    problems = params.check_declarations(spec.get("params"), f"{field}.params")
    decls = params.declared(spec.get("params"))
    declared = {s["name"]: frozenset(o["name"] for o in s.get("outputs") or ())
                for s in steps}
    upstream = _upstream(steps)
    realtime = spec.get("mode") == "realtime"
    for i, step in enumerate(steps):
        problems += _step_problems(step, f"{field}.steps[{i}]", decls, declared, upstream,
                                   realtime)
    return problems

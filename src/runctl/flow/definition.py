"""A run's definition (a Story's spec, or a StoryRun's inline one) checked whole, and what each
step consumes.

References and conditions add edges to the DAG: a step that reads another's output needs it,
whether or not its `needs` says so. The checks here name the field (`spec.steps[2].args[0]`)
and run at apply (webhook) and again before a run starts (a run that got past a webhook that
was off ends `InvalidSpec` with the same words).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from runctl.flow import conditions, items, params, references
from runctl.flow.references import Item, Malformed, Ref
from runctl.machine.dag import Problem

Step = Mapping[str, Any]


def step_refs(step: Step) -> list[tuple[str, Ref]]:
    """(field under the step, reference) for every reference in the step's fields, its
    condition and its fan-out's items. Malformed references are skipped (`check` reports
    them)."""
    out: list[tuple[str, Ref]] = []
    for where, text in references.fields(step):
        try:
            out += [(where, r) for r in references.find(text)]
        except Malformed:
            continue
    try:
        source = items.source(step["forEach"]) if items.fans_out(step) else None
    except Malformed:
        source = None
    if source is not None:
        out.append(("forEach.items", source))
    if step.get("when"):
        out += [("when", r) for r in conditions.references(step["when"])]
    return out


def consumes(step: Step) -> tuple[tuple[str, str], ...]:
    """(producer, output) pairs the step reads, sorted, each once."""
    return tuple(sorted({(r.step, r.name) for _, r in step_refs(step)
                         if r.output and r.step is not None}))


def reads_facts(step: Step) -> bool:
    """Does the step read the run's outcome or a main step's phase (a finally step)?"""
    return any(r.fact for _, r in step_refs(step))


def needs(step: Step, main: Collection[str] = ()) -> tuple[str, ...]:
    """The step's needs: those it names, then the producers it reads that it does not name.
    A finally step reads main steps' outputs without needing them (`main`: their names): they
    are all terminal before it starts, and an output one did not make skips it."""
    named = list(step.get("needs") or ())
    return (*named, *sorted({p for p, _ in consumes(step)} - set(named) - set(main)))


def _upstream(steps: Sequence[Step], main: Collection[str]) -> dict[str, set[str]]:
    """Every step's transitive needs, implied ones included (a cycle leaves a step upstream of
    itself); every main step is upstream of every finally step."""
    direct = {s["name"]: set(needs(s)) | (set(main) if s["name"] not in main else set())
              for s in steps}
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
                   realtime: bool, main: frozenset[str] | None) -> list[Problem]:
    """`main`: the main steps' names when `step` is a finally step (None for a main step)."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for j, out in enumerate(step.get("outputs") or ()):
        if out["name"] in seen:
            problems.append(Problem(f"{here}.outputs[{j}].name",
                                    f'output "{out["name"]}" declared twice'))
        seen.add(out["name"])
    if realtime and step.get("outputs"):
        problems.append(Problem(f"{here}.outputs", "a realtime step has no outputs"))
    fan_out = items.step_problems(step, here, decls, realtime=realtime and main is None)
    problems += fan_out
    for where, text in references.fields(step):
        try:
            refs = references.find(text)
        except Malformed as e:
            problems.append(Problem(f"{here}.{where}", str(e)))
            continue
        problems += [Problem(f"{here}.{where}", why) for r in refs
                     if (why := _ref_problem(r, step, decls, declared, upstream, realtime,
                                             main))]
    source = [(w, r) for w, r in step_refs(step) if w == "forEach.items"] if not fan_out else []
    problems += [Problem(f"{here}.{w}", why) for w, r in source
                 if (why := _ref_problem(r, step, decls, declared, upstream, realtime, main))]
    when = step.get("when")
    if when and realtime and main is None:
        problems.append(Problem(f"{here}.when", "conditions are for batch runs"))
    elif when:
        try:
            conditions.check(when, decls, declared, main, items.probes(step))
        except conditions.Invalid as e:
            problems.append(Problem(f"{here}.when", str(e)))
        else:
            problems += [Problem(f"{here}.when", why) for r in conditions.references(when)
                         if (why := _ref_problem(r, step, decls, declared, upstream,
                                                 realtime, main))]
    return problems


def _ref_problem(ref: Ref, step: Step, decls: Mapping[str, params.Param],
                 declared: Mapping[str, frozenset[str]], upstream: Mapping[str, set[str]],
                 realtime: bool, main: frozenset[str] | None) -> str | None:
    consumer = step["name"]
    if ref.item:
        return None if items.fans_out(step) else f"{ref}: only a step with forEach has an item"
    if ref.fact:
        if main is None:
            return f"{ref}: only finally steps read the run's outcome and its steps' phases"
        if ref.step is not None and ref.step not in main:
            return f'{ref}: "{ref.step}" is not a step of spec.steps'
        return None
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
    finals = list(spec.get("finally") or ())
    main = frozenset(s["name"] for s in steps)
    problems = params.check_declarations(spec.get("params"), f"{field}.params")
    decls = params.declared(spec.get("params"))
    declared = {s["name"]: frozenset(o["name"] for o in s.get("outputs") or ())
                for s in [*finals, *steps]}
    upstream = _upstream([*steps, *finals], main)
    realtime = spec.get("mode") == "realtime"
    for i, step in enumerate(steps):
        problems += _step_problems(step, f"{field}.steps[{i}]", decls, declared, upstream,
                                   realtime, None)
    for i, step in enumerate(finals):
        problems += _step_problems(step, f"{field}.finally[{i}]", decls, declared, upstream,
                                   realtime, main)
    return problems + items.run_problems(steps, finals, field)


def trial_render(spec: Mapping[str, Any], values: Mapping[str, Any], here: str
                 ) -> list[Problem]:
    """Fields that read params only (or params and the items of a literal fan-out, for each
    item), rendered now: a value that would make them unusable (spelling `${{` with the text
    around it) fails the run before anything starts."""
    problems: list[Problem] = []
    for key in ("steps", "finally"):
        for i, step in enumerate(spec.get(key) or ()):
            literal = items.literal(step)
            for where, text in references.fields(step):
                refs = references.find(text)
                if refs and all(r.param for r in refs):
                    each: list[Item | None] = [None]
                elif refs and literal is not None and all(r.param or r.item for r in refs):
                    each = [Item(n, v) for n, v in enumerate(literal)]
                else:
                    continue
                try:
                    for item in each:
                        references.render(text, values, {}, item=item)
                except references.Malformed as e:
                    problems.append(Problem(f"{here}.{key}[{i}].{where}", str(e)))
    return problems

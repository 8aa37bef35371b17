"""Hostile StoryRuns and Stories, built by hypothesis: valid ones first, then mutated where it
hurts.

A valid base run (1 to 5 steps forming a DAG, simulated pods that end quickly) gets one to three
structure-aware mutations: a node replaced by a hostile value (a wrong type, a huge string or
list, unicode, deep nesting), a node removed, an unknown field added, references that almost
resolve (a typo, upper case, a look-alike letter, a cycle), duplicates, integers just past their
bounds, and simulation annotations that almost parse.

A valid Story (params, declared outputs, `${{ }}` references to params and upstream outputs,
CEL `when` conditions) gets the same mutations, and is sent with a StoryRun of it whose params
are valid or mutated (unknown, missing, mistyped, outside enum, hostile values).

Every run keeps a deadline of at most DEADLINE seconds (set before it is sent whenever the spec
still has room for one), so every run the API server accepts has a bound to end within; a run
whose Story was refused waits for it DEADLINE seconds (the operator is started so) and ends.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

DEADLINE = 20
"""The longest deadline (spec.timeoutSeconds) a fuzzed run carries."""

Obj = dict[str, Any]
NAME = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
SIM = "sim.runctl.dev/"
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=64))


def _nest(depth: int) -> Any:
    value: Any = "deep"
    for i in range(depth):
        value = {"a": value} if i % 2 else [value]
    return value


HOSTILE = st.one_of(
    JSON_SCALARS,
    st.integers(min_value=1000, max_value=40000).map(lambda n: "x" * n),
    st.integers(min_value=20, max_value=300).map(lambda n: ["a"] * n),
    st.integers(min_value=5, max_value=80).map(_nest),
    st.lists(st.text(max_size=8), max_size=5),
    st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=5),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300),
)
ALMOST = {
    "duration": ["1x", "-1s", "forever ", "9999999h", "", "1.5.s", "0"],
    "exit-code": ["256", "-1", "abc", "", "1e3", " 1"],
    "message": ["{", "[]", '{"a": 1}', '{"a":"' + "b" * 5000 + '"}', "null"],
    "fail-attempts": ["x", "-3", "99999999999999999999"],
}
EDGES = {  # (path from a step or the spec, values just inside and just past the bound)
    ("retry", "limit"): [10, 11, -1],
    ("retry", "backoffSeconds"): [3600, 3601],
    ("retry", "transientExitCodes"): [[0], [256], list(range(1, 34))],
    ("port",): [0, 65535, 65536],
    ("timeoutSeconds",): [0, 1],
    ("heartbeatTimeoutSeconds",): [0, 1],
}


@st.composite
def valid_runs(draw: st.DrawFn) -> Obj:
    names = draw(st.lists(NAME, min_size=1, max_size=5, unique=True))
    steps = []
    for i, name in enumerate(names):
        annotations = {SIM + "duration": draw(st.sampled_from(["0s", "200ms", "1s", "2s"]))}
        if draw(st.booleans()):
            annotations[SIM + "exit-code"] = draw(st.sampled_from(["0", "1", "75"]))
        step: Obj = {
            "name": name, "image": f"example.invalid/{name}:1",
            "needs": draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=3))
            if i else [],
            "pod": {"annotations": annotations},
        }
        if draw(st.booleans()):
            step["retry"] = {"limit": draw(st.integers(0, 2)), "backoffSeconds": 0,
                             "transientExitCodes": [75]}
        if draw(st.booleans()):
            step["env"] = [{"name": "DAY", "value": draw(st.text(max_size=20))}]
            step["args"] = draw(st.lists(st.text(max_size=20), max_size=3))
        steps.append(step)
    return {"apiVersion": "runctl.dev/v1alpha1", "kind": "StoryRun", "metadata": {"name": "x"},
            "spec": {"steps": steps, "timeoutSeconds": DEADLINE,
                     "mode": draw(st.sampled_from(["batch", "batch", "realtime"])),
                     "onFailure": draw(st.sampled_from(["stop", "continue"]))}}


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a node below the object's spec and metadata.name."""
    found = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*path, i))
    return found


def _node(obj: Obj, path: tuple[Any, ...]) -> Any:
    node: Any = obj
    for key in path:
        node = node[key]
    return node


def _parent(obj: Obj, path: tuple[Any, ...]) -> Any:
    return _node(obj, path[:-1])


def _steps(obj: Obj) -> list[Obj]:
    spec = obj.get("spec")
    steps = spec.get("steps") if isinstance(spec, dict) else None
    return [s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []


@st.composite
def _mutate(draw: st.DrawFn, obj: Obj) -> Obj:
    kind = draw(st.sampled_from(["replace", "replace", "remove", "unknown", "reference",
                                 "duplicate", "grow", "edge", "simulation", "name"]))
    steps = _steps(obj)
    paths = [("spec", *p) for p in _paths(obj["spec"])] or [("spec",)]
    if kind == "replace":
        path = draw(st.sampled_from(paths))
        _parent(obj, path)[path[-1]] = draw(HOSTILE)
    elif kind == "remove":
        path = draw(st.sampled_from(paths))
        parent = _parent(obj, path)
        del parent[path[-1]]
    elif kind == "unknown":
        dicts = [p for p in paths if isinstance(_node(obj, p), dict)] or [("spec",)]
        target = _node(obj, draw(st.sampled_from(dicts)))
        target[draw(st.text(min_size=1, max_size=20))] = draw(HOSTILE)
    elif kind == "reference" and steps:
        step = draw(st.sampled_from(steps))
        other = str(draw(st.sampled_from(steps)).get("name"))
        near = draw(st.sampled_from([other + "x", other.upper(), other + "-", "",
                                     other.replace("a", "\u0430"), " " + other, other]))
        if draw(st.booleans()) and len(steps) > 1:  # a cycle through every step
            for i, s in enumerate(steps):
                s["needs"] = [steps[i - 1].get("name")]
        else:
            step["needs"] = [near]
    elif kind == "duplicate" and steps:
        obj["spec"]["steps"].append(copy.deepcopy(draw(st.sampled_from(steps))))
    elif kind == "grow" and steps:
        count = draw(st.sampled_from([50, 51, 100, 101]))
        base = steps[0]
        obj["spec"]["steps"] = [{**copy.deepcopy(base), "name": f"g{i}", "needs": []}
                                for i in range(count)]
        if draw(st.booleans()):
            obj["spec"]["steps"][-1]["needs"] = [f"g{i}" for i in range(count - 1)]
    elif kind == "edge" and steps:
        (path, values) = draw(st.sampled_from(sorted(EDGES.items())))
        node = draw(st.sampled_from(steps))
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node[path[-1]] = draw(st.sampled_from(values))
    elif kind == "simulation" and steps:
        key = draw(st.sampled_from(sorted(ALMOST)))
        pod = draw(st.sampled_from(steps)).setdefault("pod", {})
        if isinstance(pod, dict) and isinstance(pod.setdefault("annotations", {}), dict):
            pod["annotations"][SIM + key] = draw(st.sampled_from(ALMOST[key]))
    elif kind == "name":
        obj["metadata"]["name"] = draw(st.one_of(HOSTILE, NAME.map(lambda n: n + "-" * 70)))
    return obj


def _bounded(obj: Obj) -> Obj:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        timeout = spec.get("timeoutSeconds")
        if timeout is None or (type(timeout) is int and timeout > DEADLINE):
            spec["timeoutSeconds"] = DEADLINE
    return obj


@st.composite
def _mutated(draw: st.DrawFn, obj: Obj) -> Obj:
    """`obj` mutated one to three times, its deadline kept at most DEADLINE."""
    for _ in range(draw(st.integers(1, 3))):
        if not isinstance(obj.get("spec"), dict):
            break
        obj = draw(_mutate(obj))
    return _bounded(obj)


@st.composite
def hostile_runs(draw: st.DrawFn) -> Obj:
    """A valid run mutated one to three times, its deadline kept at most DEADLINE."""
    return draw(_mutated(draw(valid_runs())))


PARAMS: list[Obj] = [{"name": "table", "type": "string"},
                     {"name": "dryRun", "type": "boolean", "default": False},
                     {"name": "rows", "type": "number", "default": 1},
                     {"name": "region", "type": "string", "enum": ["eu", "us"], "default": "eu"},
                     {"name": "tags", "type": "array", "default": []}]
OUTPUT_MESSAGES = ['{"rows": 3, "table": "t1"}', '{"rows": 0}', '{"table": "t2"}', "{}"]
WHEN = ["params.dryRun == false", "params.rows > 0 && params.region == 'eu'",
        "size(params.tags) == 0", "int(steps.{p}.outputs.rows) > 0",
        "steps.{p}.outputs.table != 'none' || params.dryRun"]
ALMOST_REFERENCES = ["${{ params.tabel }}", "${{ params.table", "${{}}", "${{ steps.{p} }}",
                     "${{ steps.{p}.outputs.nope }}", "${{ steps.zz.outputs.rows }}",
                     "${{ params.table }}${{", "$${{ params.table }}"]
ALMOST_WHEN = ["params.dryRun ==", "params.rows", "params.nope == 1", "steps.zz.outputs.rows",
               "int(params.table) + ", "params.region == 'eu' && 1", "'${{'"]


@st.composite
def valid_stories(draw: st.DrawFn) -> tuple[Obj, Obj]:
    """A Story whose steps declare outputs, read params and upstream outputs through `${{ }}`
    and may carry a `when`, and a StoryRun of it with valid params."""
    base = draw(valid_runs())
    spec = base["spec"]
    spec["mode"] = "batch"  # references to outputs and conditions are for batch runs
    steps = spec["steps"]
    producers: list[str] = []
    for i, step in enumerate(steps):
        upstream = [p for p in producers if p in step["needs"]] or producers[:1]
        annotations = step["pod"]["annotations"]
        if draw(st.booleans()):
            step["outputs"] = [{"name": "rows"}, {"name": "table", "default": "none"}]
            annotations[SIM + "message"] = draw(st.sampled_from(OUTPUT_MESSAGES))
        if draw(st.booleans()):
            step["args"] = ["--table", "${{ params.table }}", "--region", "${{ params.region }}"]
        if upstream and draw(st.booleans()):
            producer = draw(st.sampled_from(upstream))
            step["env"] = [{"name": "ROWS", "value": f"${{{{ steps.{producer}.outputs.rows }}}}"}]
        if i and draw(st.booleans()):
            when = draw(st.sampled_from(WHEN if upstream else WHEN[:3]))
            step["when"] = when.format(p=upstream[0] if upstream else "")
        if "outputs" in step:
            producers.append(step["name"])
    extra = draw(st.lists(st.sampled_from(PARAMS[1:]), unique_by=lambda p: str(p["name"])))
    story = {"apiVersion": "runctl.dev/v1alpha1", "kind": "Story", "metadata": {"name": "x"},
             "spec": {**spec, "params": copy.deepcopy([PARAMS[0], *extra])}}
    declared = {p["name"] for p in story["spec"]["params"]}
    for step in steps:  # read only the params the Story declares
        text = repr(step)
        if any(f"params.{p['name']}" in text and p["name"] not in declared for p in PARAMS):
            step.pop("when", None)
            step.pop("args", None)
    values: dict[str, Any] = {"table": draw(st.text(max_size=20))}
    if "dryRun" in declared and draw(st.booleans()):
        values["dryRun"] = draw(st.booleans())
    run = {"apiVersion": "runctl.dev/v1alpha1", "kind": "StoryRun", "metadata": {"name": "x"},
           "spec": {"storyRef": {"name": "x"}, "params": values}}
    return story, run


@st.composite
def _mutate_story(draw: st.DrawFn, story: Obj) -> Obj:
    """A Story-specific mutation: a reference or a condition that almost parses, a param
    declared twice or badly, an output declared twice."""
    steps = _steps(story)
    kind = draw(st.sampled_from(["reference", "when", "param", "output", "generic"]))
    if kind == "generic" or not steps:
        return draw(_mutate(story))
    step = draw(st.sampled_from(steps))
    other = str(draw(st.sampled_from(steps)).get("name"))
    if kind == "reference":
        field = draw(st.sampled_from(["args", "command", "env", "annotations"]))
        value = draw(st.sampled_from(ALMOST_REFERENCES)).replace("{p}", other)
        if field == "env":
            step["env"] = [{"name": "V", "value": value}]
        elif field == "annotations" and isinstance(step.get("pod"), dict):
            step["pod"].setdefault("annotations", {})["note"] = value
        else:
            step[field] = [value]
    elif kind == "when":
        step["when"] = draw(st.one_of(st.sampled_from(ALMOST_WHEN), HOSTILE))
    elif kind == "param":
        params = story["spec"].setdefault("params", [])
        if isinstance(params, list):
            params.append(copy.deepcopy(draw(st.sampled_from([
                {"name": "table", "type": "string"}, {"name": "n", "type": "number",
                                                      "default": "one"},
                {"name": "e", "type": "string", "enum": ["a"], "default": "b"},
                {"name": "1bad", "type": "string"}, {"name": "t", "type": "date"},
                {"name": "o", "type": "object", "default": [1]}]))))
    else:
        step["outputs"] = [{"name": "rows"}, {"name": "rows", "default": "0"}]
    return story


PARAM_VALUES = st.one_of(HOSTILE, st.sampled_from(["eu", "us", "mars", 1, True, [], {}]))


@st.composite
def hostile_stories(draw: st.DrawFn) -> tuple[Obj, Obj]:
    """A Story and a StoryRun of it, either or both mutated (a valid pair now and then)."""
    story, run = draw(valid_stories())
    if draw(st.integers(0, 3)):
        for _ in range(draw(st.integers(1, 2))):
            if isinstance(story.get("spec"), dict):
                story = draw(_mutate_story(story))
    _bounded(story)
    if not draw(st.integers(0, 2)):
        params = run["spec"]["params"]
        kind = draw(st.sampled_from(["unknown", "missing", "value", "whole", "steps", "timeout"]))
        if kind == "unknown":
            params[draw(st.text(min_size=1, max_size=12))] = draw(PARAM_VALUES)
        elif kind == "missing":
            del params["table"]
        elif kind == "value":
            params[draw(st.sampled_from([p["name"] for p in PARAMS]))] = draw(PARAM_VALUES)
        elif kind == "whole":
            run["spec"]["params"] = draw(HOSTILE)
        elif kind == "steps":
            run["spec"]["steps"] = draw(valid_runs())["spec"]["steps"]
        else:
            run["spec"]["timeoutSeconds"] = DEADLINE
    return story, run

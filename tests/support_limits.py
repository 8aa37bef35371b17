"""A StoryRun at every bound of docs/API.md's Limits at once, and the run text the CRD counts.

`at_every_bound` is the largest run a user may write: the most steps, each with the most needs
the DAG allows, the longest names, the most command and args items, env variables, pod labels,
annotations, nodeSelector entries and tolerations, the longest single values, and free text
filled to exactly MAX_RUN_TEXT.
"""

from __future__ import annotations

from typing import Any

from runctl.api.spec import (
    MAX_ARGS,
    MAX_COMMAND,
    MAX_ENV,
    MAX_NEEDS,
    MAX_NODE_SELECTOR,
    MAX_POD_METADATA,
    MAX_RUN_NAME,
    MAX_RUN_TEXT,
    MAX_STEPS,
    MAX_TEXT,
    MAX_TOLERATIONS,
)

MAX_IMAGE, MAX_ENV_NAME, MAX_ENV_VALUE, MAX_ANNOTATION, MAX_LABEL = 1024, 253, 32768, 16384, 63
SIM = "sim.runctl.dev/duration"


def run_text(spec: dict[str, Any]) -> int:
    """The characters the CRD's run-text rule counts (what MAX_RUN_TEXT bounds)."""
    total = 0
    for s in spec["steps"]:
        pod = s.get("pod") or {}
        total += len(s["image"]) + sum(map(len, s.get("command") or []))
        total += sum(map(len, s.get("args") or []))
        total += sum(len(e["name"]) + len(e.get("value") or "") for e in s.get("env") or [])
        for meta in ("labels", "annotations", "nodeSelector"):
            total += sum(len(k) + len(v) for k, v in (pod.get(meta) or {}).items())
        total += sum(len(t.get("key") or "") + len(t.get("value") or "")
                     for t in pod.get("tolerations") or [])
    return total


def step_name(i: int) -> str:
    return f"{'s' * (63 - 3)}{i:03d}"


def at_every_bound(name_prefix: str = "r") -> dict[str, Any]:
    """The largest StoryRun: MAX_STEPS steps, the second half each needing MAX_NEEDS steps of
    the first half (a DAG two deep, so it runs quickly), every list at its most items, one value
    of each kind at its longest, and the free text filled to exactly MAX_RUN_TEXT."""
    steps: list[dict[str, Any]] = []
    for i in range(MAX_STEPS):
        needs = [step_name(j) for j in range(MAX_NEEDS)] if i >= MAX_STEPS - MAX_NEEDS else []
        annotations = {SIM: "1s", **{f"a{k:02d}": "" for k in range(MAX_POD_METADATA - 1)}}
        steps.append({
            "name": step_name(i), "needs": needs, "image": f"example.invalid/{i}:1",
            "command": ["c"] * MAX_COMMAND, "args": ["a"] * MAX_ARGS,
            "env": [{"name": f"E{k:02d}", "value": ""} for k in range(MAX_ENV)],
            "pod": {"labels": {f"l{k:02d}": "" for k in range(MAX_POD_METADATA)},
                    "annotations": annotations,
                    "nodeSelector": {f"n{k}": "" for k in range(MAX_NODE_SELECTOR)},
                    "tolerations": [{"key": f"t{k}", "operator": "Exists"}
                                    for k in range(MAX_TOLERATIONS)]},
        })
    first = steps[0]
    first["image"] = "example.invalid/" + "i" * (MAX_IMAGE - len("example.invalid/") - 2) + ":1"
    first["args"][0] = "a" * MAX_TEXT
    first["env"][0] = {"name": "E" * MAX_ENV_NAME, "value": "v" * MAX_ENV_VALUE}
    first["pod"]["annotations"]["a00"] = "x" * MAX_ANNOTATION
    first["pod"]["labels"]["l00"] = "l" * MAX_LABEL
    spec: dict[str, Any] = {"steps": steps}
    for s in steps[1:]:  # fill the rest of the budget, one env value at a time
        left = MAX_RUN_TEXT - run_text(spec)
        if left <= 0:
            break
        s["env"][1]["value"] = "f" * min(left, MAX_ENV_VALUE)
    assert run_text(spec) == MAX_RUN_TEXT
    name = (name_prefix + "-" + "n" * MAX_RUN_NAME)[:MAX_RUN_NAME]
    return {"apiVersion": "runctl.dev/v1alpha1", "kind": "StoryRun",
            "metadata": {"name": name}, "spec": spec}

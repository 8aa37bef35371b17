"""A step's inputs digest: what its workload is made from, as one comparable value.

A re-run reuses a step only where the digest of the step it would run equals the one recorded
on the StepRun that ran before (`runctl.machine.reuse`): two steps with the same digest would
have run the same pod. It covers the fields a workload is built from, with every reference
rendered (so the upstream outputs they read are in it), and, for a step with a `when`, the
condition and every value it reads (a param changed by a re-run could turn it); for an item of
a fan-out step, its index and value (so a re-run reuses item by item, whether or not the item's
fields read them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from runctl.flow import conditions
from runctl.flow.references import Facts, Item

WORKLOAD_FIELDS = ("image", "command", "args", "env", "pod")
"""The fields of a step that a pod or Deployment is made from."""


def canonical_digest(value: Any) -> str:
    """`sha256:` of a JSON value as canonical text (keys sorted, no spaces, UTF-8)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def inputs_digest(step: Mapping[str, Any], params: Mapping[str, Any],
                  outputs: Mapping[str, Mapping[str, str]], facts: Facts | None = None,
                  item: Item | None = None) -> str:
    """The digest of a step whose references are rendered already (as its StepRun carries it),
    given the values its condition reads (one it cannot read counts as null) and its item."""
    made: dict[str, Any] = {k: step[k] for k in WORKLOAD_FIELDS if step.get(k) is not None}
    if item is not None:
        made["item"] = {"index": item.index, "value": item.value}
    when = step.get("when")
    if when:
        reads: dict[str, Any] = {}
        for ref in conditions.references(when):
            if ref.fact:
                reads[str(ref)] = facts.value(ref) if facts is not None else None
            elif ref.step is None:
                reads[str(ref)] = params.get(ref.name)
            else:
                reads[str(ref)] = outputs.get(ref.step, {}).get(ref.name)
        made["when"] = {"condition": when, "reads": reads}
    return canonical_digest(made)

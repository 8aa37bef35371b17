"""What happened to each fuzzed object, counted; and the results file `make fuzz` writes."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field

FIELD = re.compile(r"\b(spec|metadata|status)(\.[A-Za-z]|\[|:)|Go struct field \w+\.\w+")
"""A field path in a refusal message (spec.steps[0].env, metadata.name, spec: ...), or the
field the API server's decoder names (`Go struct field ObjectMeta.name`)."""


@dataclass
class Tally:
    """Counts by outcome, with a few examples of every outcome that must stay at zero; added
    to from several sender threads."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str, example: str = "") -> None:
        with self.lock:
            self.counts[outcome] += 1
            if example and len(self.examples.setdefault(outcome, [])) < 3:
                self.examples[outcome].append(example[:500])

    def refused(self, status: int, body: str) -> None:
        """Sort an API server refusal: by server error, size, or whether it names a field."""
        if status >= 500:
            self.add("server error (5xx)", body)
        elif status == 413:
            self.add("refused before reading: body over 3 MiB (413)")
        elif status == 409:
            self.add("refused: name already taken (409)")
        elif names_a_field(body):
            self.add("refused at apply, field named")
        else:
            self.add("refused at apply, no field named", body)


def names_a_field(body: str) -> bool:
    try:
        status = json.loads(body)
    except ValueError:
        return bool(FIELD.search(body))
    causes = (status.get("details") or {}).get("causes") or []
    return any(c.get("field") for c in causes) or bool(FIELD.search(status.get("message", "")))


MUST_BE_ZERO = ("server error (5xx)", "refused at apply, no field named", "operator crashed",
                "not terminal within its bound", "never terminal (stuck)", "no answer read")
ORDER = ("tried", "refused at apply, field named",
         "accepted, a Story (run by the StoryRun sent after it)", "accepted, terminal",
         "accepted, refused by the operator (InvalidSpec)",
         "refused before reading: body over 3 MiB (413)", "refused: name already taken (409)",
         *MUST_BE_ZERO, "of those, terminal later")


def markdown(tally: Tally, heading: str) -> str:
    rows = [f"| {name} | {tally.counts.get(name, 0)} |" for name in ORDER]
    rows += [f"| {name} | {n} |" for name, n in sorted(tally.counts.items()) if name not in ORDER]
    lines = [heading, "", "| outcome | objects |", "| --- | --- |", *rows]
    for name, found in sorted(tally.examples.items()):
        lines += ["", f"{name}, for example:", "", *[f"- `{e}`" for e in found]]
    return "\n".join(lines) + "\n"

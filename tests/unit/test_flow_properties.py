"""Properties of references: rendering is a function of its inputs, leaves no `${{`, and every
output a step reads is one of its needs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from runctl.flow import definition, references
from runctl.flow.references import Malformed

NAMES = st.sampled_from(["a", "b", "c_1", "dryRun"])
STEPS = st.sampled_from(["s0", "s1", "load-data"])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6)
PIECES = st.one_of(
    st.text(alphabet="ab ${}.", max_size=6),
    NAMES.map(lambda n: f"${{{{ params.{n} }}}}"),
    st.tuples(STEPS, NAMES).map(lambda t: f"${{{{steps.{t[0]}.outputs.{t[1]}}}}}"),
)
TEXTS = st.lists(PIECES, max_size=6).map("".join)
VALUES = st.dictionaries(NAMES, JSON.filter(lambda v: "${{" not in references.rendered_value(v)),
                         min_size=4, max_size=4).filter(lambda d: set(d) == {
                             "a", "b", "c_1", "dryRun"})
OUTPUTS = st.fixed_dictionaries({s: st.fixed_dictionaries({
    n: st.text(alphabet="xyz${} ", max_size=4).filter(lambda v: "${{" not in v)
    for n in ["a", "b", "c_1", "dryRun"]}) for s in ["s0", "s1", "load-data"]})


@given(TEXTS, VALUES, OUTPUTS)
def test_rendering_is_deterministic_and_leaves_no_marker(text: str, values: dict[str, object],
                                                         outputs: dict[str, dict[str, str]]
                                                         ) -> None:
    try:
        references.find(text)
    except Malformed:
        return  # refused at apply: never rendered
    try:
        once = references.render(text, values, outputs)
    except Malformed:
        return  # its values spell the marker with the text: the step fails, nothing renders
    assert once == references.render(text, dict(reversed(values.items())), outputs)
    assert "${{" not in once


@given(st.lists(TEXTS, max_size=4), st.lists(STEPS, max_size=2, unique=True))
def test_every_output_read_is_needed(args: list[str], named: list[str]) -> None:
    step = {"name": "c", "needs": named, "args": args}
    needs = definition.needs(step)
    assert {p for p, _ in definition.consumes(step)} <= set(needs)
    assert list(needs[:len(named)]) == named
    assert len(set(needs)) == len(needs)

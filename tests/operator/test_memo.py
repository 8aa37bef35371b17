"""The bounded stores of what the operator remembers: what they keep, what they forget first."""

from __future__ import annotations

from runctl.operator.memo import Bounded
from runctl.operator.refusals import Refusals
from tests.recorded import load


def test_a_bounded_store_forgets_its_oldest_entry_first() -> None:
    store: Bounded[str, int] = Bounded(kept=2)
    store["a"], store["b"] = 1, 2
    store["a"] = 3  # stored again: it keeps the place it was first stored at
    store["c"] = 4
    assert (store.get("a"), store.get("b"), store.get("c"), len(store)) == (None, 2, 4, 2)
    assert "a" not in store


def test_a_bounded_store_tells_what_it_forgets() -> None:
    forgotten: list[tuple[str, int]] = []
    store: Bounded[str, int] = Bounded(kept=1, forgotten=lambda k, v: forgotten.append((k, v)))
    store["a"] = 1
    store["a"] = 2  # stored again: nothing forgotten
    store["b"] = 3
    assert forgotten == [("a", 2)]


def test_a_refused_status_write_is_refused_before_only_unchanged() -> None:
    refusals, sr = Refusals(), load("steprun-ok-load")
    refusals.refuse_write("StepRun", sr, {"phase": "Running", "attempts": 2})
    assert refusals.refused_before("StepRun", sr, {"attempts": 2, "phase": "Running"})
    assert not refusals.refused_before("StepRun", sr, {"phase": "Running", "attempts": 3})
    assert not refusals.refused_before("StoryRun", sr, {"phase": "Running", "attempts": 2})


def test_a_forbidden_create_is_news_once_per_reason() -> None:
    refusals = Refusals()
    assert refusals.forbid("Pod", "ok-load-1", "exceeded quota: pods")
    assert not refusals.forbid("Pod", "ok-load-1", "exceeded quota: pods")
    assert refusals.forbid("Pod", "ok-load-1", "cannot create pods")
    assert refusals.forbid("Pod", "ok-load-2", "cannot create pods")

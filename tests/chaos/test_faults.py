"""The fault plan depends on its seed alone, and names every kind when it has room to."""

from __future__ import annotations

from chaos import faults, load


def test_the_same_seed_plans_the_same_faults_and_another_seed_others() -> None:
    assert faults.plan(7, 24, 250) == faults.plan(7, 24, 250)
    assert faults.plan(7, 24, 250) != faults.plan(8, 24, 250)


def test_every_kind_is_planned_in_order_of_time_within_the_span() -> None:
    planned = faults.plan(3, 24, 250)
    assert set(faults.KINDS) <= {p.kind for p in planned}
    assert [p.at for p in planned] == sorted(p.at for p in planned)
    assert all(0 <= p.at <= 250 and 0 <= p.draw < 1 for p in planned)
    assert sorted(p.kind for p in faults.plan(3, len(faults.KINDS), 60)) == sorted(faults.KINDS)


def test_the_load_has_every_kind_in_turn_with_unique_names() -> None:
    runs = load.load(22)
    assert [r.kind for r in runs[:11]] == list(load.KINDS)
    assert len({r.name for r in runs}) == 22

"""Deterministic, bounded names: a second operator finds what the first one made."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from runctl.machine.model import WorkloadRef
from runctl.machine.naming import (
    MAX_STEP_RUN_NAME,
    item_key,
    item_keys,
    parse_key,
    step_run_name,
    workload_ref,
)
from runctl.machine.phases import Mode

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True)
DNS = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")


def test_short_names_are_run_dash_step() -> None:
    assert step_run_name("nightly-etl", "extract") == "nightly-etl-extract"


@given(run=label, step=label)
def test_names_are_bounded_stable_and_distinct(run: str, step: str) -> None:
    name = step_run_name(run, step)
    assert len(name) <= MAX_STEP_RUN_NAME
    assert DNS.match(name)
    assert name == step_run_name(run, step)


def test_long_names_that_share_a_prefix_differ() -> None:
    run = "r" * 70
    assert step_run_name(run, "a") != step_run_name(run, "b")
    assert step_run_name(run, "a") == "r" * 51 + "-" + step_run_name(run, "a")[-8:]


def test_workloads() -> None:
    assert workload_ref(Mode.BATCH, "r-a", 2) == WorkloadRef("Pod", "r-a-2")
    assert workload_ref(Mode.REALTIME, "r-a", 1) == WorkloadRef("Deployment", "r-a")


@given(st.from_regex(r"[a-z]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True), st.integers(0, 300))
def test_the_keys_of_a_step_s_items_are_each_item_s_key_in_order(step: str, total: int) -> None:
    keys = item_keys(step, total)
    assert keys == [item_key(step, i) for i in range(total)]
    assert [parse_key(k) for k in keys] == [(step, i) for i in range(total)]

"""Status writes are JSON merge patches: what the new status drops must be sent as null."""

from __future__ import annotations

from runctl.operator.serialize import merge_patch


def test_a_dropped_field_is_sent_as_null() -> None:
    old = {"phase": "Running", "reason": "RetryBackoff", "attempts": 1}
    new = {"phase": "Running", "attempts": 2}
    assert merge_patch(old, new) == {"reason": None, "attempts": 2}


def test_nested_maps_are_patched_key_by_key() -> None:
    old = {"stepStates": {"a": {"phase": "Running", "reason": "RetryBackoff"},
                          "b": {"phase": "Pending"}}}
    new = {"stepStates": {"a": {"phase": "Running"}, "b": {"phase": "Pending"}}}
    assert merge_patch(old, new) == {"stepStates": {"a": {"reason": None}}}


def test_lists_and_new_maps_are_sent_whole() -> None:
    old = {"conditions": [{"type": "Succeeded", "status": "Unknown"}]}
    new = {"conditions": [{"type": "Succeeded", "status": "True"}], "stop": {"trigger": "User"}}
    assert merge_patch(old, new) == new


def test_nothing_to_write_is_an_empty_patch() -> None:
    same = {"phase": "Succeeded", "stepStates": {"a": {"phase": "Succeeded"}}}
    assert merge_patch(same, same) == {}
    assert merge_patch(None, {}) == {}


def test_applying_the_patch_gives_the_new_value() -> None:
    def apply(doc: dict, patch: dict) -> dict:
        out = dict(doc)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = apply(out[k], v)
            else:
                out[k] = v
        return out

    old = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1], "f": "x"}
    new = {"a": 1, "b": {"c": 4}, "e": [1, 2], "g": {"h": 5}}
    assert apply(old, merge_patch(old, new)) == new

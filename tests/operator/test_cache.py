"""The cache corrects itself from a fresh list: what a watch missed is repaired, and what was
written after the list was taken is never taken for deleted."""

from __future__ import annotations

from typing import Any

from runctl.operator.cache import TOMBSTONE_TTL, ObjectCache, Refusal
from runctl.operator.memo import KEPT


def obj(name: str, rv: int, run: str = "r", ns: str = "ns") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": str(rv),
                         "labels": {"runctl.dev/storyrun": run},
                         "ownerReferences": [{"uid": "u-" + run}]}}


def test_a_deletion_the_watch_missed_becomes_a_tombstone() -> None:
    cache = ObjectCache()
    cache.put("Deployment", obj("j1", 10))
    assert cache.sync("Deployment", [], list_rv=20) == 1
    assert cache.get("Deployment", "ns", "j1") is None
    assert cache.was_deleted("Deployment", "ns", "j1")
    assert cache.was_deleted("Deployment", "ns", "j1", owner="u-r")
    assert not cache.was_deleted("Deployment", "ns", "j1", owner="u-other")
    assert cache.children("Deployment", ("ns", "r")) == []


def test_an_object_newer_than_the_list_is_kept() -> None:
    cache = ObjectCache()
    cache.put("Deployment", obj("j1", 30))
    assert cache.sync("Deployment", [], list_rv=20) == 0
    assert cache.get("Deployment", "ns", "j1") is not None
    assert not cache.was_deleted("Deployment", "ns", "j1")


def test_missed_creations_and_updates_are_taken_and_older_copies_ignored() -> None:
    cache = ObjectCache()
    cache.put("Pod", obj("p-old", 5))
    cache.put("Pod", obj("p-new", 50))
    listed = [obj("p-old", 15), obj("p-new", 40), obj("p-missed", 12)]
    assert cache.sync("Pod", listed, list_rv=45) == 2
    assert cache.get("Pod", "ns", "p-old")["metadata"]["resourceVersion"] == "15"
    assert cache.get("Pod", "ns", "p-new")["metadata"]["resourceVersion"] == "50"
    assert cache.get("Pod", "ns", "p-missed") is not None
    assert len(cache.children("Pod", ("ns", "r"))) == 3


def test_runs_are_synced_too() -> None:
    cache = ObjectCache()
    cache.put_run(obj("gone", 3))
    cache.put_run(obj("kept", 4))
    assert cache.sync("StoryRun", [obj("kept", 4)], list_rv=9) == 1
    assert set(cache.runs) == {("ns", "kept")}
    assert ("ns", "gone") in cache.deleted_runs


def test_a_list_of_one_namespace_deletes_nothing_in_another() -> None:
    cache = ObjectCache()
    cache.put("Deployment", obj("j1", 10, ns="a"))
    cache.put("Deployment", obj("j2", 10, ns="b"))
    assert cache.sync("Deployment", [], list_rv=20, namespace="a") == 1
    assert cache.get("Deployment", "a", "j1") is None
    assert cache.get("Deployment", "b", "j2") is not None


def test_an_event_older_than_the_cached_copy_does_not_take_it_back() -> None:
    """A write's response can reach the cache before the watch event of an earlier change."""
    cache = ObjectCache()
    cache.put("StepRun", obj("s1", 20))
    assert cache.put("StepRun", obj("s1", 12)) == ("ns", "r")  # its run is still woken
    assert cache.get("StepRun", "ns", "s1")["metadata"]["resourceVersion"] == "20"
    cache.put_run(obj("run", 30))
    cache.put_run(obj("run", 25))
    assert cache.runs[("ns", "run")]["metadata"]["resourceVersion"] == "30"


def test_children_are_stored_without_what_no_reconcile_reads() -> None:
    cache = ObjectCache()
    pod = obj("p1", 3)
    pod["metadata"]["managedFields"] = [{"manager": "kubelet"}]
    pod["spec"] = {"containers": [{"name": "step", "image": "x"}]}
    pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready"}],
                     "containerStatuses": [{"name": "step", "ready": True}]}
    deployment = obj("j1", 4)
    deployment["spec"] = {"template": {"spec": {}}, "replicas": 1}
    run = obj("run", 5)
    run["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    cache.put("Pod", pod)
    cache.put("Deployment", deployment)
    cache.put_run(run)
    assert cache.get("Pod", "ns", "p1") == {
        "metadata": obj("p1", 3)["metadata"],
        "status": {"phase": "Running", "containerStatuses": [{"name": "step", "ready": True}]}}
    assert cache.get("Deployment", "ns", "j1")["spec"] == {"replicas": 1}
    # A run keeps its managedFields: they tell when a stop was requested.
    assert cache.runs[("ns", "run")]["metadata"]["managedFields"] == [{"manager": "kubectl"}]


def test_tombstones_expire_an_hour_after_the_last_deletion_seen(monkeypatch: Any) -> None:
    """Expiry reads the tombstones oldest first and stops at the first one still kept, so a
    deletion seen again (a replayed DELETED event) must count from then, not keep its place."""
    clock = [1000.0]
    monkeypatch.setattr("runctl.operator.cache.time.monotonic", lambda: clock[0])
    cache = ObjectCache()
    for name in ("again", "middle", "late"):
        cache.put("Pod", obj(name, 1))
    cache.drop("Pod", obj("again", 2))
    clock[0] += 900
    cache.drop("Pod", obj("middle", 2))
    clock[0] += 900
    cache.drop("Pod", obj("again", 2))
    cache.drop("Pod", obj("late", 2))
    clock[0] += TOMBSTONE_TTL - 900 + 1  # an hour after "middle" was deleted
    cache.drop("Pod", obj("trigger", 1))
    assert not cache.was_deleted("Pod", "ns", "middle")
    assert cache.was_deleted("Pod", "ns", "again")
    assert cache.was_deleted("Pod", "ns", "late")
    clock[0] += 900
    cache.drop("Pod", obj("trigger", 2))
    assert not cache.was_deleted("Pod", "ns", "again")
    assert not cache.was_deleted("Pod", "ns", "late")
    assert cache.was_deleted("Pod", "ns", "trigger")


def test_the_refused_children_of_an_owner_are_found_at_once_and_forgotten_with_the_oldest(
        ) -> None:
    """A run's refused StepRuns are looked up by the run (a snapshot cannot look each of
    10,000 items up), and the index forgets what the bounded memory forgets."""
    cache = ObjectCache()
    cache.refuse("StepRun", "ns", "r-each-2", "u-r", "invalid: no", "each[2]")
    cache.refuse("StepRun", "ns", "r-solo", "u-r", "invalid: nor this", "solo")
    cache.refuse("Pod", "ns", "r-solo-1", "u-r-solo", "invalid: pod")
    assert cache.refused("StepRun", "ns", "u-r") == [
        Refusal("r-each-2", "each[2]", "invalid: no"),
        Refusal("r-solo", "solo", "invalid: nor this")]
    assert cache.refusal("StepRun", "ns", "r-each-2", "u-r") == "invalid: no"
    assert cache.refused("StepRun", "ns", "u-other") == []
    assert cache.refused("StepRun", "other", "u-r") == []
    assert cache.refused("Pod", "ns", "u-r-solo") == [Refusal("r-solo-1", "", "invalid: pod")]

    for i in range(KEPT - 1):  # the first two forgotten, the pod's kept
        cache.refuse("StepRun", "ns", f"x-{i}", f"u-x{i}", "invalid")
    assert cache.refused("StepRun", "ns", "u-r") == []
    assert cache.refusal("StepRun", "ns", "r-each-2", "u-r") is None
    assert len(cache.refused("Pod", "ns", "u-r-solo")) == 1
    assert sum(len(cache.refused("StepRun", "ns", f"u-x{i}")) for i in range(KEPT - 1)) == KEPT - 1

"""The fault plan depends on its seed alone, and names every kind when it has room to; a fault
whose target ends before it lands is aimed again or recorded as having found nothing."""

from __future__ import annotations

from types import SimpleNamespace

from chaos.harness import Outcome
from kubernetes.client.exceptions import ApiException

from chaos import faults, load, report


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


class _Gone(ApiException):
    def __init__(self, name: str) -> None:
        super().__init__(status=404, reason="Not Found")
        self.body = f'{{"message": "pods \\"{name}\\" not found"}}'


class _Pods:
    """The API server's pods as a deletion sees them: `ending` end between its list and its
    delete (listed Running, gone when the delete arrives)."""

    def __init__(self, running: list[str], ending: set[str]) -> None:
        self.running, self.ending = list(running), ending
        self.deleted: list[str] = []

    def list_namespaced_pod(self, namespace: str, label_selector: str) -> SimpleNamespace:
        pods = [SimpleNamespace(to_dict=lambda n=n: {
            "metadata": {"name": n, "deletion_timestamp": None},
            "status": {"phase": "Running"}}) for n in self.running]
        return SimpleNamespace(items=pods)

    def delete_namespaced_pod(self, name: str, namespace: str) -> None:
        if name in self.ending:
            self.running.remove(name)
            raise _Gone(name)
        self.deleted.append(name)


def _injector(pods: _Pods) -> faults.Injector:
    return faults.Injector(SimpleNamespace(namespace="chaos", core=pods))  # type: ignore[arg-type]


def test_a_target_that_ended_between_choosing_and_deleting_is_chosen_again() -> None:
    pods = _Pods(["a-1", "b-1"], ending={"b-1"})
    done = _injector(pods).inject(faults.Planned(1.0, "delete-pod", 0.9))
    assert pods.deleted == ["a-1"]
    assert done.hit
    assert done.detail == "Pod a-1 deleted (1 of 1; b-1 had ended meanwhile)"


def test_a_deletion_whose_every_choice_ended_first_found_nothing_and_the_run_goes_on() -> None:
    names = [f"p-{i}" for i in range(faults.CHOICES + 1)]
    pods = _Pods(names, ending=set(names))
    done = _injector(pods).inject(faults.Planned(1.0, "delete-pod", 0.0))
    assert pods.deleted == []
    assert not done.hit
    assert done.detail == (f"found nothing: the {faults.CHOICES} Pods chosen in turn "
                           f"({', '.join(names[:faults.CHOICES])}) had ended before their "
                           "delete")


def test_faults_that_found_nothing_are_counted_by_kind_in_the_results() -> None:
    done = [faults.Done("delete-pod", 0.0, 1.0, "found nothing: ...", hit=False),
            faults.Done("delete-pod", 2.0, 3.0, "Pod a-1 deleted (1 of 1)"),
            faults.Done("kill-leader", 4.0, 8.0, "replica-a killed")]
    out = Outcome(7, [], [], done, [], {}, {}, 10.0, 0)
    s = report.summary(out)
    assert s["faults_by_kind"]["delete-pod"] == 2
    assert {k: n for k, n in s["found_nothing_by_kind"].items() if n} == {"delete-pod": 1}
    assert set(s["found_nothing_by_kind"]) == set(faults.KINDS)
    assert "| delete-pod | 2 | 1 |" in report.markdown(s, "2026-12-07")

"""Re-runs on the real control plane with a real operator (no webhook here: bad input ends
InvalidSpec): a re-run after a failure reuses exactly what succeeded upstream of it and makes
no pod for it; `from` and a params override execute again what they touch and what is
downstream; the source is never written, and may be deleted once the re-run started; a re-run
of a re-run points at the run that made each value; finally steps always run again."""

from __future__ import annotations

from typing import Any

import pytest

from runctl.api.wire import RERUN_LABEL
from runctl.devcluster import ControlPlane
from tests.conftest import OperatorProcess
from tests.support import (
    apply,
    get_run,
    items,
    kubectl_json,
    step,
    step_states,
    wait_for,
    wait_terminal,
)

pytestmark = pytest.mark.integration

API = "runctl.dev/v1alpha1"
SIM = "sim.runctl.dev/"


def nightly() -> dict[str, Any]:
    """extract -> clean -> load -> publish, and report -> summary beside them; load's exit
    code and duration are params (so a re-run can mend it), report reads `day`; notify always
    runs last."""
    steps = [
        step("extract", message='{"rows": "12"}', outputs=[{"name": "rows"}]),
        step("clean", "extract", args=["--rows", "${{ steps.extract.outputs.rows }}"],
             message='{"kept": "10"}', outputs=[{"name": "kept"}]),
        step("load", "clean", env=[{"name": "KEPT", "value": "${{ steps.clean.outputs.kept }}"}],
             annotations={SIM + "exit-code": "${{ params.fail }}",
                          SIM + "duration": "${{ params.loadFor }}"}),
        step("publish", "load"),
        step("report", args=["--day", "${{ params.day }}"]),
        step("summary", "report"),
    ]
    return {"apiVersion": API, "kind": "Story", "metadata": {"name": "nightly"},
            "spec": {"params": [{"name": "fail", "type": "string", "default": "0"},
                                {"name": "loadFor", "type": "string", "default": "1s"},
                                {"name": "day", "type": "string", "default": "mon"}],
                     "steps": steps, "finally": [step("notify")]}}


def run(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "StoryRun", "metadata": {"name": name}, "spec": spec}


def rerun(name: str, source: str, *, from_: list[str] | None = None,
          **params: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"rerunOf": {"name": source}}
    if from_:
        spec["rerun"] = {"from": from_}
    if params:
        spec["params"] = params
    return run(name, **spec)


def versions(cluster: ControlPlane, namespace: str, name: str) -> dict[str, str]:
    """The resourceVersion of a run and of each of its StepRuns (its own: by owner)."""
    found = get_run(cluster, namespace, name)
    uid = found["metadata"]["uid"]
    out = {name: found["metadata"]["resourceVersion"]}
    for sr in items(cluster, namespace, "stepruns", f"runctl.dev/storyrun={name}"):
        if any(o["uid"] == uid for o in sr["metadata"].get("ownerReferences") or ()):
            out[sr["metadata"]["name"]] = sr["metadata"]["resourceVersion"]
    return out


def steprun(cluster: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return kubectl_json(cluster, "get", "steprun", name, "-n", namespace)


def pod_steps(cluster: ControlPlane, namespace: str, run_name: str) -> set[str]:
    """The steps of the run that ever had a pod (pods stay while their StepRun does)."""
    return {p["metadata"]["labels"]["runctl.dev/step"]
            for p in items(cluster, namespace, "pods", f"runctl.dev/storyrun={run_name}")}


def reasons(found: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {s: (v["phase"], v.get("reason", "")) for s, v in step_states(found).items()}


def failed_source(cluster: ControlPlane, namespace: str) -> dict[str, Any]:
    """Run `src` of the Story: load fails, so publish never runs; the rest succeeded."""
    apply(cluster, namespace, nightly())
    # load runs for 3s: what runs beside it has long ended when it fails.
    apply(cluster, namespace, run("src", storyRef={"name": "nightly"},
                                  params={"fail": "3", "loadFor": "3s"}))
    source = wait_terminal(cluster, namespace, "src")
    assert source["status"]["phase"] == "Failed", source["status"]
    assert reasons(source)["load"][0] == "Failed"
    assert {s for s, (p, _) in reasons(source).items() if p == "Succeeded"} == {
        "extract", "clean", "report", "summary", "notify"}
    return source


REUSED = ("Succeeded", "Reused")


def test_a_rerun_after_a_failure_reuses_what_succeeded_and_never_writes_the_source(
        operator: OperatorProcess, namespace: str) -> None:
    cluster = operator.cluster
    failed_source(cluster, namespace)
    before = versions(cluster, namespace, "src")
    apply(cluster, namespace, rerun("again", "src", fail="0"))
    again = wait_terminal(cluster, namespace, "again")
    assert again["status"]["phase"] == "Succeeded", again["status"]
    assert reasons(again) == {
        "extract": REUSED, "clean": REUSED, "report": REUSED, "summary": REUSED,
        "load": ("Succeeded", "Completed"), "publish": ("Succeeded", "Completed"),
        "notify": ("Succeeded", "Completed")}
    # No workload of any kind for what it reused; finally steps ran again.
    assert pod_steps(cluster, namespace, "again") == {"load", "publish", "notify"}
    assert items(cluster, namespace, "deployments") == []
    # A reused StepRun: Succeeded/Reused from the start, the producer's outputs, its record.
    made = steprun(cluster, namespace, "src-clean")
    clean = steprun(cluster, namespace, "again-clean")
    assert clean["status"]["outputs"] == made["status"]["outputs"] == {"kept": "10"}
    assert clean["status"]["reusedFrom"] == {"storyRun": "src", "stepRun": "src-clean",
                                             "uid": made["metadata"]["uid"]}
    assert (clean["status"]["attempts"], clean["status"].get("workload")) == (0, None)
    assert clean["spec"]["inputsDigest"] == made["spec"]["inputsDigest"]
    assert steprun(cluster, namespace, "again-load")["spec"]["env"] == [
        {"name": "KEPT", "value": "10"}]
    # The record, the label, the count in the wide columns.
    assert again["status"]["rerun"]["source"] == {
        "name": "src", "uid": get_run(cluster, namespace, "src")["metadata"]["uid"]}
    assert again["status"]["rerun"]["reused"] == 4
    assert again["status"]["resolved"]["params"] == {"fail": "0", "loadFor": "3s",
                                                     "day": "mon"}
    assert again["status"]["story"] == get_run(cluster, namespace, "src")["status"]["story"]
    assert again["metadata"]["labels"][RERUN_LABEL] == "src"
    listed = cluster.kubectl("get", "sr", "-n", namespace, "-l", f"{RERUN_LABEL}=src",
                             "-o", "wide").stdout.splitlines()
    assert listed[0].split()[-1] == "REUSED"
    assert [line.split()[0] for line in listed[1:]] == ["again"]
    assert listed[1].split()[-1] == "4"
    # The source was never written: not it, not one of its StepRuns.
    assert versions(cluster, namespace, "src") == before


def test_from_executes_that_step_and_everything_downstream_again(
        operator: OperatorProcess, namespace: str) -> None:
    cluster = operator.cluster
    failed_source(cluster, namespace)
    apply(cluster, namespace, rerun("fixed", "src", fail="0"))
    assert wait_terminal(cluster, namespace, "fixed")["status"]["phase"] == "Succeeded"
    apply(cluster, namespace, rerun("redo", "fixed", from_=["clean"]))
    redo = wait_terminal(cluster, namespace, "redo")
    assert redo["status"]["phase"] == "Succeeded", redo["status"]
    assert {s for s, r in reasons(redo).items() if r == REUSED} == {
        "extract", "report", "summary"}
    assert pod_steps(cluster, namespace, "redo") == {"clean", "load", "publish", "notify"}


def test_a_params_override_executes_again_the_steps_whose_inputs_it_changes(
        operator: OperatorProcess, namespace: str) -> None:
    cluster = operator.cluster
    apply(cluster, namespace, nightly())
    apply(cluster, namespace, run("monday", storyRef={"name": "nightly"}))
    assert wait_terminal(cluster, namespace, "monday")["status"]["phase"] == "Succeeded"
    apply(cluster, namespace, rerun("tuesday", "monday", day="tue"))
    tuesday = wait_terminal(cluster, namespace, "tuesday")
    assert tuesday["status"]["phase"] == "Succeeded", tuesday["status"]
    # report renders --day tue now, so it and summary (downstream) execute; the rest does not.
    assert pod_steps(cluster, namespace, "tuesday") == {"report", "summary", "notify"}
    assert steprun(cluster, namespace, "tuesday-report")["spec"]["args"] == ["--day", "tue"]
    assert {s for s, r in reasons(tuesday).items() if r == REUSED} == {
        "extract", "clean", "load", "publish"}


def test_a_rerun_completes_when_its_source_is_deleted_after_it_started(
        operator: OperatorProcess, namespace: str) -> None:
    cluster = operator.cluster
    failed_source(cluster, namespace)
    apply(cluster, namespace, rerun("late", "src", fail="0", loadFor="4s"))
    wait_for("late's load to run", lambda: reasons(get_run(cluster, namespace, "late")).get(
        "load", ("",))[0] == "Running")
    cluster.kubectl("delete", "storyrun", "src", "-n", namespace, "--wait=true")
    wait_for("the source's StepRuns to be gone", lambda: not items(
        cluster, namespace, "stepruns", "runctl.dev/storyrun=src"))
    late = wait_terminal(cluster, namespace, "late")
    assert late["status"]["phase"] == "Succeeded", late["status"]
    assert reasons(late)["clean"] == REUSED
    assert steprun(cluster, namespace, "late-clean")["status"]["outputs"] == {"kept": "10"}


def test_a_rerun_of_a_rerun_points_at_the_run_that_made_each_value(
        operator: OperatorProcess, namespace: str) -> None:
    cluster = operator.cluster
    failed_source(cluster, namespace)
    apply(cluster, namespace, rerun("second", "src", fail="0"))
    assert wait_terminal(cluster, namespace, "second")["status"]["phase"] == "Succeeded"
    apply(cluster, namespace, rerun("third", "second"))
    third = wait_terminal(cluster, namespace, "third")
    assert third["status"]["phase"] == "Succeeded", third["status"]
    # Every main step reused: made by src (extract, clean, report, summary) or by second.
    made_by = {s: r["storyRun"] for s, r in third["status"]["rerun"]["steps"].items()}
    assert made_by == {"extract": "src", "clean": "src", "report": "src", "summary": "src",
                       "load": "second", "publish": "second"}
    assert steprun(cluster, namespace, "third-load")["status"]["reusedFrom"]["stepRun"] == (
        "second-load")
    assert third["metadata"]["labels"][RERUN_LABEL] == "second"
    # Finally steps always run again, even when nothing else does.
    assert pod_steps(cluster, namespace, "third") == {"notify"}
    assert reasons(third)["notify"] == ("Succeeded", "Completed")


BAD = [
    pytest.param(rerun("bad", "nowhere"), "spec.rerunOf.name: run nowhere not found in "
                 "namespace", id="missing"),
    pytest.param(rerun("bad", "src", from_=["nope"]), 'spec.rerun.from[0]: "nope" is not a '
                 "step of run src", id="from"),
    pytest.param(rerun("bad", "src", fail=3), "spec.params.fail: the value must be of type "
                 "string, not number", id="params"),
    pytest.param(run("bad", rerunOf={"name": "src", "namespace": "elsewhere"}),
                 "spec.rerunOf.namespace: must be the run's own namespace", id="namespace"),
]


@pytest.mark.parametrize(("manifest", "words"), BAD)
def test_a_bad_rerun_past_apply_ends_invalid_spec_with_no_steprun(
        operator: OperatorProcess, namespace: str, manifest: dict[str, Any], words: str
        ) -> None:
    cluster = operator.cluster
    apply(cluster, namespace, nightly())
    apply(cluster, namespace, run("src", storyRef={"name": "nightly"}))
    wait_terminal(cluster, namespace, "src")
    before = versions(cluster, namespace, "src")
    apply(cluster, namespace, manifest)
    bad = wait_terminal(cluster, namespace, "bad")
    assert (bad["status"]["phase"], bad["status"]["reason"]) == ("Failed", "InvalidSpec")
    assert words in bad["status"]["message"], bad["status"]["message"]
    assert items(cluster, namespace, "stepruns", "runctl.dev/storyrun=bad") == []
    assert "rerun" not in bad["status"]
    assert versions(cluster, namespace, "src") == before


def test_a_rerun_of_a_run_still_going_ends_invalid_spec(operator: OperatorProcess,
                                                        namespace: str) -> None:
    cluster = operator.cluster
    apply(cluster, namespace, nightly())
    apply(cluster, namespace, run("slow", storyRef={"name": "nightly"},
                                  params={"loadFor": "30s"}))
    wait_for("slow to start", lambda: step_states(get_run(cluster, namespace, "slow")))
    apply(cluster, namespace, rerun("early", "slow"))
    early = wait_terminal(cluster, namespace, "early")
    assert (early["status"]["phase"], early["status"]["reason"]) == ("Failed", "InvalidSpec")
    assert "spec.rerunOf.name: run slow is Running: only a terminal run can run again" in (
        early["status"]["message"])
    assert items(cluster, namespace, "stepruns", "runctl.dev/storyrun=early") == []

"""`runctl` as a person runs it, against the real local control plane and a real operator.

Every test runs the installed command in a process of its own and checks what a person reads
(standard output, one line on standard error) and the exit status a script would test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runctl.devcluster import ControlPlane
from runctl.devcluster.components import SIMULATED_LOG_LINE
from tests.conftest import OperatorProcess
from tests.support import apply, items, step, storyrun, wait_for, wait_phase, wait_terminal
from tests.support_rbac import service_account_kubeconfig

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
EXAMPLES = Path(__file__).parents[2] / "examples"


def runctl(cluster: ControlPlane, *args: str, kubeconfig: Path | None = None,
           timeout: float = 120, command: str = "runctl") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig or cluster.kubeconfig),
           "PATH": f"{BIN}{os.pathsep}{cluster.bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("NO_COLOR", None)
    argv = ["kubectl", "runctl", *args] if command == "kubectl" else [str(BIN / "runctl"), *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess[str], command: str) -> str:
    """The error a person reads: exit 1, nothing on stdout, one line on stderr, no traceback."""
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"runctl {command}: ")
    return result.stderr.strip()


def diamond(name: str) -> dict:
    return storyrun(name, [
        step("extract"),
        step("clean", "extract", duration="2s"),
        step("enrich", "extract", duration="2s"),
        step("join", "clean", "enrich"),
    ])


def test_get_shows_the_run_as_a_tree_and_as_json_and_yaml(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, diamond("etl"))
    wait_terminal(cluster, namespace, "etl")
    shown = runctl(cluster, "get", "etl", "-n", namespace)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"Run:      {namespace}/etl (batch)"
    assert lines[1] == "Phase:    Succeeded (Completed)  4/4 steps"
    table = lines[lines.index("") + 1:]
    assert table[0].split() == ["STEP", "PHASE", "ATTEMPTS", "DURATION", "REASON"]
    step_column, phase_column = table[0].index("PHASE"), table[0].index("ATTEMPTS")
    assert [(row[:step_column].rstrip(), row[step_column:phase_column].rstrip())
            for row in table[1:]] == [
        ("✔ extract", "Succeeded"), ("├─ ✔ clean", "Succeeded"), ("│  └─ ✔ join", "Succeeded"),
        ("└─ ✔ enrich", "Succeeded")]
    assert table[3].endswith("Completed (also needs enrich)")

    wide = runctl(cluster, "get", "etl", "-n", namespace, "-o", "wide")
    assert "Pod/etl-extract-1" in wide.stdout

    as_json = json.loads(runctl(cluster, "get", "etl", "-n", namespace, "-o", "json").stdout)
    assert [i["kind"] for i in as_json["items"]] == ["StoryRun"] + ["StepRun"] * 4
    as_yaml = yaml.safe_load(runctl(cluster, "get", "etl", "-n", namespace, "-o", "yaml").stdout)
    assert as_yaml == as_json


def test_watch_prints_transitions_and_exits_0_when_the_run_succeeds(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, diamond("ok"))
    watched = runctl(cluster, "watch", "ok", "-n", namespace)
    assert watched.returncode == 0, watched.stderr
    lines = watched.stdout.splitlines()
    assert lines[-1].split()[1:5] == ["✔", "run", "ok", "Succeeded"]
    steps = [line.split()[2:4] for line in lines if line.split()[2] != "run"]
    finished = [name for name, phase in steps if phase == "Succeeded"]
    assert sorted(finished) == ["clean", "enrich", "extract", "join"]
    assert {name for name, phase in steps if phase == "Running"} <= set(finished)
    assert finished.index("extract") < finished.index("join")


def test_watch_of_a_run_already_over_exits_with_its_code_every_time(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    """The command ends while its watch threads still read their streams (it used to abort
    with SIGABRT now and then at that moment)."""
    apply(cluster, namespace, diamond("done"))
    assert runctl(cluster, "watch", "done", "-n", namespace).returncode == 0
    for _ in range(5):
        again = runctl(cluster, "watch", "done", "-n", namespace)
        assert again.returncode == 0, again.stderr
        assert again.stdout.splitlines()[-1].split()[1:5] == ["✔", "run", "done", "Succeeded"]


@pytest.mark.parametrize(("spec", "phase", "code"), [
    pytest.param({"steps": [step("bad", exit_code=3)]}, "Failed", 3, id="Failed"),
    pytest.param({"steps": [step("slow", duration="60s")], "timeoutSeconds": 2}, "TimedOut", 5,
                 id="TimedOut"),
])
def test_watch_exits_with_the_documented_status_for_each_unsuccessful_end(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str, spec: dict,
        phase: str, code: int) -> None:
    steps = spec.pop("steps")
    apply(cluster, namespace, storyrun("r", steps, **spec))
    watched = runctl(cluster, "watch", "r", "-n", namespace)
    assert watched.returncode == code, watched
    assert watched.stdout.splitlines()[-1].split()[2:5] == ["run", "r", phase]


def test_stop_requests_the_stop_and_watch_exits_4_when_canceled(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, storyrun("long", [step("a", duration="60s"),
                                                step("b", "a")]))
    wait_phase(cluster, namespace, "long", {"Running"})
    stopped = runctl(cluster, "stop", "long", "-n", namespace, "--watch")
    assert stopped.returncode == 4, stopped
    assert stopped.stdout.splitlines()[0] == "storyrun long stop requested"
    assert stopped.stdout.splitlines()[-1].split()[2:5] == ["run", "long", "Canceled"]
    run = json.loads(cluster.kubectl("get", "sr", "long", "-n", namespace, "-o", "json").stdout)
    assert run["spec"]["cancelRequested"] is True
    again = runctl(cluster, "stop", "long", "-n", namespace)
    assert (again.returncode, again.stdout) == (0, "storyrun long is already Canceled: nothing "
                                                   "to stop\n")


def test_list_shows_the_namespaces_runs_and_all_of_them_with_A(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, storyrun("one", [step("a")]))
    wait_terminal(cluster, namespace, "one")
    listed = runctl(cluster, "list", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[:5] for line in listed.stdout.splitlines()] == [
        ["NAME", "PHASE", "PROGRESS", "REASON", "AGE"],
        ["✔", "one", "Succeeded", "1/1", "Completed"]]
    everywhere = runctl(cluster, "list", "-A").stdout.splitlines()
    assert everywhere[0].split()[0] == "NAMESPACE"
    assert [namespace, "✔", "one", "Succeeded"] in [line.split()[:4] for line in everywhere]


ETL = {"apiVersion": "runctl.dev/v1alpha1", "kind": "Story", "metadata": {"name": "etl"},
       "spec": {"params": [{"name": "table", "type": "string"},
                           {"name": "dryRun", "type": "boolean", "default": False}],
                "steps": [step("extract", args=["${{ params.table }}"]), step("load", "extract")]}}


@pytest.mark.parametrize(("params", "words"), [
    pytest.param(["-p", "tabel=orders"], 'spec.params.tabel: unknown param "tabel" (declared: '
                 'table, dryRun); spec.params.table: required param missing (it has no '
                 'default)', id="misspelt"),
    pytest.param(["-p", "dryRun=maybe", "-p", "table=x"], "spec.params.dryRun: the value "
                 "must be of type boolean, not string", id="mistyped"),
])
def test_start_refuses_params_that_do_not_fit_before_creating_anything(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str, params: list[str],
        words: str) -> None:
    """With the operator but no webhook (as here), `runctl start` checks the params itself with
    the webhook's check, says what it would say, and creates no StoryRun."""
    apply(cluster, namespace, ETL)
    refused = one_line_error(runctl(cluster, "start", "etl", "-n", namespace, *params), "start")
    assert refused == f"runctl start: a run of story etl would be refused: {words}"
    assert items(cluster, namespace, "storyruns") == []


def test_a_run_whose_spec_was_invalid_reads_no_step_done_in_get_and_list(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    """A run of a Story with a param misspelt, made past every check (kubectl, no webhook),
    ends InvalidSpec having run nothing: no `2/2 steps`."""
    apply(cluster, namespace, ETL)
    apply(cluster, namespace, {"apiVersion": "runctl.dev/v1alpha1", "kind": "StoryRun",
                               "metadata": {"name": "typo"},
                               "spec": {"storyRef": {"name": "etl"},
                                        "params": {"tabel": "orders"}}})
    assert wait_terminal(cluster, namespace, "typo")["status"]["reason"] == "InvalidSpec"
    shown = runctl(cluster, "get", "typo", "-n", namespace)
    assert shown.stdout.splitlines()[1] == "Phase:    Failed (InvalidSpec)  0/2 steps", shown
    listed = runctl(cluster, "list", "-n", namespace).stdout.splitlines()
    assert [line.split()[:5] for line in listed[1:]] == [
        ["✖", "typo", "Failed", "0/2", "InvalidSpec"]]
    columns = cluster.kubectl("get", "sr", "typo", "-n", namespace, "--no-headers").stdout
    assert columns.split()[1:4] == ["Failed", "0/2", "InvalidSpec"], columns  # STEPS agrees


def test_rerun_as_the_guide_says_reuses_what_succeeded_and_get_marks_it(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    """examples/rerun.yaml and the commands of docs/guide.md's "Running it again"."""
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "rerun.yaml"))
    assert wait_terminal(cluster, namespace, "nightly-1")["status"]["phase"] == "Failed"
    again = runctl(cluster, "rerun", "nightly-1", "-n", namespace, "-p", "loadExit=0",
                   "--watch")
    assert again.returncode == 0, again.stderr
    name = again.stdout.splitlines()[0]
    shown = runctl(cluster, "get", name, "-n", namespace)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "Re-run:   of nightly-1, 2 steps reused" in lines
    reused = [words[words.index("Succeeded") - 1] for line in lines
              if line.endswith("Reused from run nightly-1") and (words := line.split())]
    assert reused == ["extract", "clean"]
    listed = cluster.kubectl("get", "sr", "-n", namespace, "-l",
                             "runctl.dev/rerun-of=nightly-1", "-o", "wide").stdout.splitlines()
    assert [(row.split()[0], row.split()[1], row.split()[-1]) for row in listed[1:]] == [
        (name, "Succeeded", "2")]
    assert one_line_error(runctl(cluster, "rerun", "nope", "-n", namespace), "rerun") == \
        f"runctl rerun: storyrun nope not found in namespace {namespace}"
    # No webhook serves this cluster: runctl refuses a bad re-run itself, before creating it.
    assert one_line_error(runctl(cluster, "rerun", "nightly-1", "-n", namespace, "--from",
                                 "lod", "-p", "colour=red"), "rerun") == (
        "runctl rerun: a re-run of nightly-1 would be refused: spec.rerun.from[0]: \"lod\" is "
        "not a step of run nightly-1; spec.params.colour: unknown param \"colour\" (declared: "
        "day, loadExit)")
    runs = cluster.kubectl("get", "sr", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(runs) == sorted([f"storyrun.runctl.dev/{name}",
                                   "storyrun.runctl.dev/nightly-1"])


def test_no_node_of_the_local_control_plane_advertises_anything_but_loopback(
        cluster: ControlPlane) -> None:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert nodes
    for node in nodes:
        assert {a["address"] for a in node["status"]["addresses"]} == {"127.0.0.1"}


def test_logs_come_through_the_api_server_from_the_simulated_node(
        cluster: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, storyrun("logged", [step("a"), step("b", "a", duration="4s")]))
    wait_for("step b to run", lambda: any(
        p["status"].get("phase") == "Running"
        for p in items(cluster, namespace, "pods", "runctl.dev/step=b")))
    followed = runctl(cluster, "logs", "logged", "-n", namespace, "-f")
    assert followed.returncode == 0, followed.stderr
    # Pods are read at once, each line written whole as it arrives: no order between pods.
    assert sorted(followed.stdout.splitlines()) == [f"[a/1] {SIMULATED_LOG_LINE}",
                                                    f"[b/1] {SIMULATED_LOG_LINE}"]
    assert wait_terminal(cluster, namespace, "logged")["status"]["phase"] == "Succeeded"
    one = runctl(cluster, "logs", "logged", "b", "-n", namespace)
    assert (one.returncode, one.stdout) == (0, f"{SIMULATED_LOG_LINE}\n")
    unknown = runctl(cluster, "logs", "logged", "c", "-n", namespace)
    assert one_line_error(unknown, "logs") == \
        "runctl logs: storyrun logged has no step c (its steps: a, b)"


def test_it_works_as_a_kubectl_plugin(cluster: ControlPlane, crds: ControlPlane,
                                      namespace: str) -> None:
    result = runctl(cluster, "list", "-n", namespace, command="kubectl")
    assert (result.returncode, result.stderr) == (0, f"No runs found in namespace {namespace}.\n")


def test_errors_are_one_line_and_exit_1(cluster: ControlPlane, crds: ControlPlane,
                                        namespace: str, tmp_path: Path) -> None:
    assert one_line_error(runctl(cluster, "get", "nope", "-n", namespace), "get") == \
        f"runctl get: storyrun nope not found in namespace {namespace}"
    assert one_line_error(runctl(cluster, "watch", "nope", "-n", namespace), "watch") == \
        f"runctl watch: storyrun nope not found in namespace {namespace}"

    # A person whose kubeconfig names this namespace but who may not read StoryRuns.
    cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kubeconfig = service_account_kubeconfig(cluster, namespace, "reader", tmp_path / "kc")
    refused = one_line_error(runctl(cluster, "get", "etl", kubeconfig=kubeconfig), "get")
    assert refused.startswith(f"runctl get: no permission for storyrun etl in namespace "
                              f"{namespace}: ")
    assert f'User "system:serviceaccount:{namespace}:reader" cannot get' in refused

    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    (tmp_path / "gone").write_text(yaml.safe_dump(config))
    unreachable = one_line_error(runctl(cluster, "list", kubeconfig=tmp_path / "gone"), "list")
    assert "cannot reach the API server at https://127.0.0.1:1" in unreachable
    missing = one_line_error(runctl(cluster, "list", kubeconfig=tmp_path / "none"), "list")
    assert missing == f"runctl list: no cluster to log in to: not running in a pod, and no " \
                      f"kubeconfig at $KUBECONFIG {tmp_path / 'none'}"

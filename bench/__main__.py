"""runctl's benchmarks, against a real local control plane with kwok-simulated pods.

    python -m bench            # the whole harness (about 10 minutes on 2 cores)
    python -m bench --quick    # smaller sizes (about 1.5 minutes), same measurements

Prints a table of figures against their targets and writes it to bench/results/<date>.md and
.json. Figures, not assertions: tests never time anything.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from runctl.devcluster import ControlPlane
from runctl.devcluster.cluster import REPO_ROOT, build_binaries

GROUP, VERSION = "runctl.dev", "v1alpha1"
TERMINAL = {"Succeeded", "Failed", "Canceled", "TimedOut"}
RESULTS = REPO_ROOT / "bench" / "results"


# -- the cluster and the operator ------------------------------------------------------------


class Bench:
    def __init__(self, workdir: Path, size: str) -> None:
        self.size = size
        self.cluster = ControlPlane(workdir, build_binaries())
        self.op: subprocess.Popen[bytes] | None = None
        self.figures: list[dict[str, Any]] = []

    def __enter__(self) -> Bench:
        self.cluster.start()
        self.cluster.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
        self.cluster.kubectl("wait", "--for=condition=Established", "crd", "--all")
        self.api = self.cluster.api_client()
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_operator()
        self.cluster.stop()

    def start_operator(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)}
        path = self.cluster.logs / "operator.log"
        since = path.stat().st_size if path.exists() else 0  # an earlier process's lines
        log = path.open("ab")
        runctl = Path(sys.executable).parent / "runctl"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.metrics_port = s.getsockname()[1]
        self.op = subprocess.Popen([str(runctl), "operator", "--metrics-address", "127.0.0.1",
                                    "--metrics-port", str(self.metrics_port),
                                    "--liveness", ""], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while b"runctl operator started" not in path.read_bytes()[since:]:
            if time.monotonic() > deadline or self.op.poll() is not None:
                raise RuntimeError("the operator did not start")
            time.sleep(0.1)

    def stop_operator(self) -> None:
        if self.op is not None and self.op.poll() is None:
            os.killpg(self.op.pid, signal.SIGTERM)
            self.op.wait(timeout=30)
        self.op = None

    # -- what the figures are read from ------------------------------------------------------

    def cpu_seconds(self) -> float:
        assert self.op is not None
        fields = Path(f"/proc/{self.op.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        assert self.op is not None
        for line in Path(f"/proc/{self.op.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def apiserver_requests(self) -> Counter[tuple[str, str, str]]:
        """apiserver_request_total by (verb, resource, subresource), from its /metrics."""
        text = self.cluster.kubectl("get", "--raw", "/metrics").stdout
        counts: Counter[tuple[str, str, str]] = Counter()
        for line in text.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            key = (labels.get("verb", ""), labels.get("resource", ""),
                   labels.get("subresource", ""))
            counts[key] += int(float(line.rsplit(" ", 1)[1]))
        return counts

    def operator_requests(self) -> Counter[tuple[str, str]]:
        """runctl's own count of its API requests by (verb, resource), whatever the outcome,
        and by ("conflicts", "") those the API server refused as written on a stale view."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        counts: Counter[tuple[str, str]] = Counter()
        for line in text.splitlines():
            if line.startswith("runctl_api_requests_total{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
                n = int(float(line.rsplit(" ", 1)[1]))
                counts[(labels["verb"], labels["resource"])] += n
                if labels.get("outcome") == "conflict":
                    counts[("conflicts", "")] += n
        return counts

    def record(self, name: str, value: float | str, unit: str, target: str = "",
               met: bool | None = None, note: str = "") -> None:
        self.figures.append({"name": name, "value": value, "unit": unit, "target": target,
                             "met": met, "note": note})
        shown = f"{value:.3g}" if isinstance(value, float) else value
        verdict = "" if met is None else ("met" if met else "MISSED")
        print(f"  {name}: {shown} {unit}  {target} {verdict} {note}".rstrip(), flush=True)

    # -- runs ----------------------------------------------------------------------------------

    def namespace(self, name: str) -> str:
        self.core.create_namespace({"metadata": {"name": name}})
        return name

    def drop_namespace(self, name: str) -> None:
        """Delete a scenario's namespace and wait until it is gone, so its clean-up (StepRuns let
        go, Jobs and pods deleted) is not counted against the next scenario."""
        self.core.delete_namespace(name)

        def gone() -> bool:
            try:
                self.core.read_namespace(name)
            except client.ApiException as exc:
                return exc.status == 404
            return False

        self.wait(f"namespace {name} to be gone", gone, timeout=300)

    def create_runs(self, ns: str, bodies: Iterable[dict[str, Any]]) -> None:
        def create(body: dict[str, Any]) -> None:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, "storyruns", body)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, bodies))

    def runs(self, ns: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, ns, "storyruns")["items"]
        return items

    def wait(self, what: str, probe: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not probe():
            if time.monotonic() > deadline:
                tail = (self.cluster.logs / "operator.log").read_text(errors="replace")[-3000:]
                raise TimeoutError(f"timed out waiting for {what}; operator log:\n{tail}")
            time.sleep(0.5)

    def all_steps_running(self, ns: str, count: int) -> bool:
        runs = self.runs(ns)
        return len(runs) == count and all(
            (r.get("status") or {}).get("stepStates")
            and all(s.get("phase") == "Running" for s in r["status"]["stepStates"].values())
            for r in runs)


def step(name: str, *needs: str, duration: str) -> dict[str, Any]:
    return {"name": name, "needs": list(needs), "image": f"example.invalid/{name}:1",
            "pod": {"annotations": {"sim.runctl.dev/duration": duration}}}


def run_body(name: str, steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StoryRun",
            "metadata": {"name": name}, "spec": {**spec, "steps": steps}}


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


# -- 1. stop latency ---------------------------------------------------------------------------


def stop_latency(b: Bench, n: int, mode: str) -> None:
    ns = b.namespace(f"stop-{mode}-{n}")
    if mode == "realtime":
        bodies = [run_body(f"r{i}", [step("hub", duration="forever")], mode="realtime",
                           transport={"lifecycle": {"drainTimeoutSeconds": 120}})
                  for i in range(n)]
    else:
        bodies = [run_body(f"r{i}", [step("long", duration="600s")]) for i in range(n)]
    b.create_runs(ns, bodies)
    b.wait(f"{n} {mode} runs running", lambda: b.all_steps_running(ns, n), timeout=60 + 3 * n)

    ended: dict[str, float] = {}
    stream = watch.Watch()

    def observe() -> None:
        for ev in stream.stream(b.custom.list_namespaced_custom_object, GROUP, VERSION, ns,
                                "storyruns", timeout_seconds=120):
            obj = ev["object"]
            if (obj.get("status") or {}).get("phase") in TERMINAL:
                ended.setdefault(obj["metadata"]["name"], time.monotonic())
            if len(ended) == n:
                stream.stop()

    watcher = threading.Thread(target=observe, daemon=True)
    watcher.start()
    time.sleep(0.5)
    patched: dict[str, float] = {}
    for i in range(n):
        patched[f"r{i}"] = time.monotonic()
        b.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "storyruns", f"r{i}",
                                                {"spec": {"cancelRequested": True}})
    watcher.join(timeout=120)
    latencies = [ended[k] - patched[k] for k in patched if k in ended]
    missing = n - len(latencies)
    p99 = percentile(latencies, 99) if latencies else float("nan")
    label = f"stop latency, {mode}, {n} concurrent"
    b.record(f"{label}, p50", percentile(latencies, 50), "s")
    b.record(f"{label}, p95", percentile(latencies, 95), "s")
    b.record(f"{label}, p99", p99, "s", "< 1 s" if n >= 100 else "",
             (p99 < 1.0 and not missing) if n >= 100 else None,
             f"{missing} not terminal" if missing else "")
    b.drop_namespace(ns)


# -- 2. the API server's ceiling and runctl's throughput -------------------------------------


def api_ceiling(b: Bench, seconds: float) -> float:
    # A StepRun of no run (unlabelled): nothing but this loop writes to it.
    ns = b.namespace("ceiling")
    b.custom.create_namespaced_custom_object(GROUP, VERSION, ns, "stepruns", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "StepRun", "metadata": {"name": "probe"},
        "spec": {"name": "a", "image": "example.invalid/a:1", "storyRun": "none", "step": "a",
                 "mode": "batch"}})
    count, began = 0, time.monotonic()
    while time.monotonic() - began < seconds:
        b.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, "stepruns", "probe",
            {"status": {"phase": "Running", "attempts": 1, "message": f"write {count}"}})
        count += 1
    rate = count / (time.monotonic() - began)
    b.record("API server ceiling: status patches from one client loop", rate, "/s")
    b.drop_namespace(ns)
    return rate


DIAMOND = [step("extract", duration="1ms"), step("clean", "extract", duration="1ms"),
           step("enrich", "extract", duration="1ms"), step("join", "clean", "enrich",
                                                          duration="1ms"),
           step("publish", "join", duration="1ms")]
# The fewest writes a diamond run can be recorded with: per step, its StepRun, its Job, and two
# StepRun status writes (started, ended); for the run, one status write per wave of the DAG
# (extract; clean+enrich; join; publish) plus the final one; and two Events (Started, the end).
# (StepRun finalizers are let go only when StepRuns are deleted, outside a run's own life.)
MINIMUM = {("create", "stepruns", ""): 5, ("create", "jobs", ""): 5,
           ("patch", "stepruns", "status"): 10, ("patch", "storyruns", "status"): 5,
           ("create", "events", ""): 2}


MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE", "APPLY"})  # apiserver_request_total verbs


def throughput(b: Bench, in_flight: int, ceiling: float) -> None:
    ns = b.namespace(f"tput-{in_flight}")
    before_api, before_ops = b.apiserver_requests(), b.operator_requests()
    before_cpu = b.cpu_seconds()
    began = time.monotonic()
    b.create_runs(ns, (run_body(f"d{i}", DIAMOND) for i in range(in_flight)))
    b.wait(f"{in_flight} runs to finish",
           lambda: sum((r.get("status") or {}).get("phase") in TERMINAL
                       for r in b.runs(ns)) == in_flight, timeout=60 + 6 * in_flight)
    elapsed = time.monotonic() - began
    time.sleep(5)  # the upkeep after the end (finalizers let go) belongs to the runs too
    cpu = b.cpu_seconds() - before_cpu
    after_api, after_ops = b.apiserver_requests(), b.operator_requests()
    per_min = in_flight / elapsed * 60
    # The ceiling allows ceiling*60/writes such runs a minute if every write were a status patch:
    # counting runctl's own minimum writes only (strict), and counting every write the API server
    # took for the runs from any client (the Job controller, the scheduler, kwok as the kubelet).
    allowed = ceiling * 60 / sum(MINIMUM.values())
    b.record(f"throughput, 5-step diamond runs, {in_flight} in flight", per_min, "runs/min",
             f">= {allowed / 2:.0f} (half the ceiling's {allowed:.0f} for runctl's "
             f"{sum(MINIMUM.values())} writes)", per_min >= allowed / 2)
    cluster_writes = sum(after_api[k] - before_api[k] for k in after_api
                         if k[0] in MUTATING) / in_flight
    everything = ceiling * 60 / cluster_writes
    b.record(f"writes per run by every client, {in_flight} in flight (API server's count)",
             cluster_writes, "")
    b.record(f"throughput against the ceiling for every client's writes, {in_flight} in flight",
             per_min, "runs/min", f">= {everything / 2:.0f} (half of {everything:.0f})",
             per_min >= everything / 2)
    b.record(f"operator CPU per run, {in_flight} in flight", cpu / in_flight, "s")
    if in_flight == max(RUN_SIZES[b.size]):
        requests_per_run(b, before_api, after_api, before_ops, after_ops, in_flight)
    b.drop_namespace(ns)


def requests_per_run(b: Bench, before: Counter[tuple[str, str, str]],
                     after: Counter[tuple[str, str, str]], ops_before: Counter[tuple[str, str]],
                     ops_after: Counter[tuple[str, str]], runs: int) -> None:
    """runctl's writes per run by verb and resource (its own counter), beside the minimum; the
    API server's count of every client's writes beside it."""
    writes = {k: (ops_after[k] - ops_before[k]) / runs for k in ops_after
              if k[0] in ("create", "patch", "delete") and ops_after[k] > ops_before[k]}
    for verb, resource in sorted(set(writes) | {(k[0], k[1] + (f"/{k[2]}" if k[2] else ""))
                                                for k in MINIMUM}):
        sub = resource.partition("/")[2]
        minimum = MINIMUM.get((verb, resource.partition("/")[0], sub), 0)
        b.record(f"writes per run: {verb} {resource}", writes.get((verb, resource), 0.0), "",
                 f"minimum {minimum}")
    # Everything the API server wrote for these runs, whoever asked (the Job controller, the
    # scheduler, kwok as the kubelet): where the rest of a run's cost in the cluster goes; its
    # status patches of StoryRuns and StepRuns, which only runctl makes, cross-check runctl's own.
    for verb, resource, sub in sorted(k for k in after if k[0] in MUTATING):
        seen = (after[(verb, resource, sub)] - before[(verb, resource, sub)]) / runs
        if seen >= 0.05:
            name = resource + (f"/{sub}" if sub else "")
            b.record(f"API server count, every client: {verb} {name} per run", seen, "")
    conflicts = (ops_after[("conflicts", "")] - ops_before[("conflicts", "")]) / runs
    b.record("writes per run refused as conflicts (decided on a stale view)", conflicts, "")
    total, minimum = sum(writes.values()), sum(MINIMUM.values())
    b.record("writes per run in all", total, "", f"<= 1.3 x {minimum} = {1.3 * minimum:.1f}",
             total <= 1.3 * minimum)


# -- 4. memory -------------------------------------------------------------------------------


def memory(b: Bench, steprun_counts: list[int]) -> None:
    b.record("operator RSS, 0 active StepRuns", b.rss_mb(), "MB")
    made = 0
    ns = b.namespace("memory")
    for target in steprun_counts:
        runs = (target - made) // 10
        b.create_runs(ns, (run_body(f"m{made // 10 + i}",
                                    [step(f"s{j}", duration="600s") for j in range(10)])
                           for i in range(runs)))
        made = target
        b.wait(f"{target} StepRuns running",
               lambda target=target: len(b.custom.list_namespaced_custom_object(
                   GROUP, VERSION, ns, "stepruns")["items"]) >= target,
               timeout=120 + target)
        time.sleep(5)
        rss = b.rss_mb()
        big = target >= 1000
        b.record(f"operator RSS, {target} active StepRuns", rss, "MB",
                 "< 200 MB" if big else "", rss < 200 if big else None)


RUN_SIZES = {"quick": (20,), "full": (50, 200)}
STOP_SIZES = {"quick": (1, 10, 30), "full": (1, 10, 100)}
MEMORY_SIZES = {"quick": [100, 300], "full": [100, 1000]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about 1.5 minutes")
    args = parser.parse_args(argv)
    size = "quick" if args.quick else "full"
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="runctl-bench-") as tmp, Bench(Path(tmp), size) as b:
        b.start_operator()
        print(f"[bench] {size}: stop latency", flush=True)
        for n in STOP_SIZES[size]:
            stop_latency(b, n, "realtime")
        stop_latency(b, 10, "batch")
        print("[bench] API server ceiling and runctl throughput", flush=True)
        ceiling = api_ceiling(b, 5 if size == "quick" else 10)
        for n in RUN_SIZES[size]:
            throughput(b, n, ceiling)
        print("[bench] operator memory", flush=True)
        # A fresh process: RSS never shrinks much, so an operator that just ran the scenarios
        # above would report their high-water mark as its idle size.
        b.stop_operator()
        b.start_operator()
        memory(b, MEMORY_SIZES[size])
        figures = b.figures
    write_results(figures, size, time.monotonic() - began)
    return 0


def write_results(figures: list[dict[str, Any]], size: str, seconds: float) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    base = RESULTS / f"{stamp}-{size}"
    machine = f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
    base.with_suffix(".json").write_text(json.dumps(
        {"date": stamp, "size": size, "machine": machine, "seconds": round(seconds),
         "figures": figures}, indent=2) + "\n")
    lines = [f"# runctl benchmarks, {stamp} ({size})", "",
             f"{machine}; local control plane with kwok; harness took {seconds:.0f} s.", "",
             "| figure | value | unit | target | |", "| --- | --- | --- | --- | --- |"]
    for f in figures:
        value = f"{f['value']:.3g}" if isinstance(f["value"], float) else f["value"]
        verdict = "" if f["met"] is None else ("met" if f["met"] else "**missed**")
        lines.append(f"| {f['name']} | {value} | {f['unit']} | {f['target']} | {verdict} |")
    base.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"[bench] wrote {base}.md and .json ({seconds:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())

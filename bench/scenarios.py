"""The scenarios: each creates its runs in a namespace of its own, records its figures, and
deletes the namespace before the next one starts.

Runs are StoryRuns of simulated pods (kwok plays the kubelet; the `sim.runctl.dev/duration`
annotation says how long a pod runs), so what is measured is the control plane and runctl,
never a workload.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from kubernetes import watch

from bench.harness import GROUP, TERMINAL, VERSION, Bench
from bench.report import Report


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


def stop_latency(b: Bench, out: Report, n: int, mode: str) -> None:
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
    out.record(f"{label}, p50", percentile(latencies, 50), "s")
    out.record(f"{label}, p95", percentile(latencies, 95), "s")
    out.record(f"{label}, p99", p99, "s", "< 1 s" if n >= 100 else "",
               (p99 < 1.0 and not missing) if n >= 100 else None,
               f"{missing} not terminal" if missing else "")
    b.drop_namespace(ns)


# -- 2. the API server's ceiling and runctl's throughput -------------------------------------


def api_ceiling(b: Bench, out: Report, seconds: float) -> float:
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
    out.record("API server ceiling: status patches from one client loop", rate, "/s")
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


def throughput(b: Bench, out: Report, in_flight: int, ceiling: float, itemize: bool) -> None:
    """Diamond runs to the end, `in_flight` at once; `itemize` adds the writes per run by verb
    and resource."""
    ns = b.namespace(f"tput-{in_flight}")
    before_api, before_ops = b.apiserver_requests(), b.operator_requests()
    before_cpu = b.cpu_seconds()
    began = time.monotonic()
    b.create_runs(ns, (run_body(f"d{i}", DIAMOND) for i in range(in_flight)))
    b.wait(f"{in_flight} runs to finish",
           lambda: sum((r.get("status") or {}).get("phase") in TERMINAL
                       for r in b.objects(ns, "storyruns")) == in_flight,
           timeout=60 + 6 * in_flight)
    elapsed = time.monotonic() - began
    time.sleep(5)  # the upkeep after the end (finalizers let go) belongs to the runs too
    cpu = b.cpu_seconds() - before_cpu
    after_api, after_ops = b.apiserver_requests(), b.operator_requests()
    per_min = in_flight / elapsed * 60
    # The ceiling allows ceiling*60/writes such runs a minute if every write were a status patch:
    # counting runctl's own minimum writes only (strict), and counting every write the API server
    # took for the runs from any client (the Job controller, the scheduler, kwok as the kubelet).
    allowed = ceiling * 60 / sum(MINIMUM.values())
    out.record(f"throughput, 5-step diamond runs, {in_flight} in flight", per_min, "runs/min",
               f">= {allowed / 2:.0f} (half the ceiling's {allowed:.0f} for runctl's "
               f"{sum(MINIMUM.values())} writes)", per_min >= allowed / 2)
    cluster_writes = sum(after_api[k] - before_api[k] for k in after_api
                         if k[0] in MUTATING) / in_flight
    everything = ceiling * 60 / cluster_writes
    out.record(f"writes per run by every client, {in_flight} in flight (API server's count)",
               cluster_writes, "")
    out.record(f"throughput against the ceiling for every client's writes, {in_flight} in flight",
               per_min, "runs/min", f">= {everything / 2:.0f} (half of {everything:.0f})",
               per_min >= everything / 2)
    out.record(f"operator CPU per run, {in_flight} in flight", cpu / in_flight, "s")
    if itemize:
        requests_per_run(out, before_api, after_api, before_ops, after_ops, in_flight)
    b.drop_namespace(ns)


def requests_per_run(out: Report, before: Counter[tuple[str, str, str]],
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
        out.record(f"writes per run: {verb} {resource}", writes.get((verb, resource), 0.0), "",
                   f"minimum {minimum}")
    # Everything the API server wrote for these runs, whoever asked (the Job controller, the
    # scheduler, kwok as the kubelet): where the rest of a run's cost in the cluster goes; its
    # status patches of StoryRuns and StepRuns, which only runctl makes, cross-check runctl's own.
    for verb, resource, sub in sorted(k for k in after if k[0] in MUTATING):
        seen = (after[(verb, resource, sub)] - before[(verb, resource, sub)]) / runs
        if seen >= 0.05:
            name = resource + (f"/{sub}" if sub else "")
            out.record(f"API server count, every client: {verb} {name} per run", seen, "")
    conflicts = (ops_after[("conflicts", "")] - ops_before[("conflicts", "")]) / runs
    out.record("writes per run refused as conflicts (decided on a stale view)", conflicts, "")
    total, minimum = sum(writes.values()), sum(MINIMUM.values())
    out.record("writes per run in all", total, "", f"<= 1.3 x {minimum} = {1.3 * minimum:.1f}",
               total <= 1.3 * minimum)


# -- 4. memory -------------------------------------------------------------------------------


def memory(b: Bench, out: Report, steprun_counts: list[int]) -> None:
    out.record("operator RSS, 0 active StepRuns", b.rss_mb(), "MB")
    made = 0
    ns = b.namespace("memory")
    for target in steprun_counts:
        runs = (target - made) // 10
        b.create_runs(ns, (run_body(f"m{made // 10 + i}",
                                    [step(f"s{j}", duration="600s") for j in range(10)])
                           for i in range(runs)))
        made = target

        def created(target: int = target) -> bool:
            return len(b.objects(ns, "stepruns")) >= target

        b.wait(f"{target} StepRuns running", created, timeout=120 + target)
        time.sleep(5)
        rss = b.rss_mb()
        big = target >= 1000
        out.record(f"operator RSS, {target} active StepRuns", rss, "MB",
                   "< 200 MB" if big else "", rss < 200 if big else None)

"""The scenarios: each creates its runs in a namespace of its own, records its figures, and
deletes the namespace before the next one starts.

Runs are StoryRuns of simulated pods (kwok plays the kubelet; the `sim.runctl.dev/duration`
annotation says how long a pod runs), so what is measured is the control plane and runctl,
never a workload. The diamond and stop cases run the same way on the peers (`bench.peers`), each
system reached through `bench.systems.System`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, NamedTuple

from kubernetes import watch

from bench.harness import GROUP, VERSION, Bench
from bench.report import Report
from bench.systems import Runctl, System, run_body, step


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


# -- 1. stop latency ---------------------------------------------------------------------------

STOP_WATCH_SECONDS = 60  # how long a stop is watched for: its runs' end and their pods' end


def stop_latency(b: Bench, out: Report, n: int, mode: str) -> None:
    runctl = Runctl(b)
    ns = b.namespace(f"stop-{mode}-{n}")
    if mode == "realtime":
        bodies = [runctl.long_run(f"r{i}") for i in range(n)]
    else:
        bodies = [run_body(f"r{i}", [step("long", duration="600s")]) for i in range(n)]
    record_stop(out, f"stop latency, {mode}, {n} concurrent", n,
                *measure_stop(b, runctl, ns, bodies), target=n >= 100)
    b.drop_namespace(ns)


def record_stop(out: Report, label: str, n: int, to_terminal: list[float],
                pods_gone: list[float], target: bool) -> None:
    """Stop latency measured two ways: to the run's terminal phase (what a client watching the
    run sees) and until none of its pods is left running (when the work has really stopped);
    `target` judges the first against runctl's target."""
    missing = n - len(to_terminal)
    p99 = percentile(to_terminal, 99)
    out.record(f"{label}, p50", percentile(to_terminal, 50), "s")
    out.record(f"{label}, p95", percentile(to_terminal, 95), "s")
    out.record(f"{label}, p99", p99, "s", "< 1 s" if target else "",
               (p99 < 1.0 and not missing) if target else None,
               f"{missing} not terminal" if missing else "")
    left = n - len(pods_gone)
    out.record(f"{label}, until pods gone, p50", percentile(pods_gone, 50), "s")
    out.record(f"{label}, until pods gone, p99", percentile(pods_gone, 99), "s",
               note=f"{left} with pods running after {STOP_WATCH_SECONDS} s" if left else "")


def measure_stop(b: Bench, system: System, ns: str,
                 bodies: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Create the runs, wait until each runs its pods, ask all of them to stop at once; return
    the seconds from each stop request to the run's terminal phase, and to the moment none of
    its pods is left running (deleted, or ended), for the runs that got there."""
    n = len(bodies)
    b.create_runs(ns, bodies, system.kind)
    b.wait(f"{n} runs running", lambda: running(b, system, ns, n), timeout=60 + 3 * n)

    ended: dict[str, float] = {}
    gone: dict[str, float] = {}
    live: dict[str, set[str]] = {}  # run -> its pods that have not ended
    listed = threading.Event()
    runs_watch, pods_watch = watch.Watch(), watch.Watch()

    def observe_runs() -> None:
        for ev in runs_watch.stream(b.custom.list_namespaced_custom_object, system.kind.group,
                                    system.kind.version, ns, system.kind.plural,
                                    timeout_seconds=STOP_WATCH_SECONDS):
            if system.terminal(ev["object"]):
                ended.setdefault(ev["object"]["metadata"]["name"], time.monotonic())
            if len(ended) == n:
                runs_watch.stop()

    def observe_pods() -> None:
        for ev in pods_watch.stream(b.core.list_namespaced_pod, ns,
                                    label_selector=system.run_label,
                                    timeout_seconds=STOP_WATCH_SECONDS):
            pod = ev["object"]
            run, name = pod.metadata.labels[system.run_label], pod.metadata.name
            pods = live.setdefault(run, set())
            if ev["type"] == "DELETED" or pod.status.phase in ("Succeeded", "Failed"):
                pods.discard(name)
            else:
                pods.add(name)
            if len(live) == n and all(live.values()):
                listed.set()
            if listed.is_set() and not pods and run in patched:
                gone.setdefault(run, time.monotonic())
            if len(gone) == n:
                pods_watch.stop()

    patched: dict[str, float] = {}
    watchers = [threading.Thread(target=f, daemon=True) for f in (observe_runs, observe_pods)]
    for w in watchers:
        w.start()
    listed.wait(timeout=30)
    time.sleep(0.5)
    for body in bodies:
        name = body["metadata"]["name"]
        patched[name] = time.monotonic()
        b.custom.patch_namespaced_custom_object(system.kind.group, system.kind.version, ns,
                                                system.kind.plural, name, system.stop_patch)
    for w in watchers:
        w.join(timeout=STOP_WATCH_SECONDS)
    return ([ended[k] - patched[k] for k in patched if k in ended],
            [gone[k] - patched[k] for k in patched if k in gone])


def running(b: Bench, system: System, ns: str, count: int) -> bool:
    """Every run has started and has a pod running."""
    runs = b.runs(ns, system.kind)
    pods: list[Any] = b.core.list_namespaced_pod(ns, label_selector=system.run_label).items
    with_pods = {p.metadata.labels[system.run_label] for p in pods
                 if p.status.phase == "Running"}
    return (len(runs) == count and all(system.started(r) for r in runs)
            and len(with_pods) == count)


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


# The fewest writes a diamond run can be recorded with: per step, its StepRun, its pod, and two
# StepRun status writes (started, ended); for the run, one status write per wave of the DAG
# (extract; clean+enrich; join; publish) plus the final one; and two Events (Started, the end).
# (StepRun finalizers are let go only when StepRuns are deleted, outside a run's own life.)
MINIMUM = {("create", "stepruns", ""): 5, ("create", "pods", ""): 5,
           ("patch", "stepruns", "status"): 10, ("patch", "storyruns", "status"): 5,
           ("create", "events", ""): 2}


MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE", "APPLY"})  # apiserver_request_total verbs


def throughput(b: Bench, out: Report, in_flight: int, ceiling: float, itemize: bool) -> None:
    """Diamond runs to the end, `in_flight` at once; `itemize` adds the writes per run by verb
    and resource."""
    ns = b.namespace(f"tput-{in_flight}")
    before_ops = b.operator_requests()
    m = measure_runs(b, Runctl(b), ns, in_flight)
    per_min = m.per_min
    after_ops = b.operator_requests()
    # The ceiling allows ceiling*60/writes such runs a minute if every write were a status patch:
    # counting runctl's own minimum writes only (strict), and counting every write the API server
    # took for the runs from any client (the scheduler, kwok as the kubelet, the controllers).
    allowed = ceiling * 60 / sum(MINIMUM.values())
    out.record(f"throughput, 5-step diamond runs, {in_flight} in flight", per_min, "runs/min",
               f">= {allowed / 2:.0f} (half the ceiling's {allowed:.0f} for runctl's "
               f"{sum(MINIMUM.values())} writes)", per_min >= allowed / 2)
    cluster_writes = writes_per_run(m.before, m.after, in_flight)
    everything = ceiling * 60 / cluster_writes
    out.record(f"writes per run by every client, {in_flight} in flight (API server's count)",
               cluster_writes, "")
    out.record(f"throughput against the ceiling for every client's writes, {in_flight} in flight",
               per_min, "runs/min", f">= {everything / 2:.0f} (half of {everything:.0f})",
               per_min >= everything / 2)
    out.record(f"operator CPU per run, {in_flight} in flight", m.cpu, "s")
    record_cpu(out, "", m, in_flight)
    if itemize:
        requests_per_run(out, m.before, m.after, before_ops, after_ops, in_flight)
    b.drop_namespace(ns)


class Measured(NamedTuple):
    per_min: float
    """Runs a minute."""
    cpu: float
    """The controller's CPU seconds per run."""
    before: Counter[tuple[str, str, str]]
    after: Counter[tuple[str, str, str]]
    """The API server's request counts before and after."""
    plane: dict[str, float]
    """Each control plane process's CPU seconds per run."""


def measure_runs(b: Bench, system: System, ns: str, in_flight: int) -> Measured:
    """`in_flight` diamond runs created at once and run to the end."""
    before_api, before_cpu = b.apiserver_requests(), system.cpu_seconds()
    before_plane = b.control_plane_cpu()
    began = time.monotonic()
    b.create_runs(ns, (system.diamond(f"d{i}") for i in range(in_flight)), system.kind)
    b.wait(f"{in_flight} runs to finish",
           lambda: sum(map(system.terminal, b.runs(ns, system.kind))) == in_flight,
           timeout=60 + 6 * in_flight)
    elapsed = time.monotonic() - began
    time.sleep(5)  # the upkeep after the end (finalizers let go) belongs to the runs too
    cpu = system.cpu_seconds() - before_cpu
    plane = {k: (v - before_plane[k]) / in_flight for k, v in b.control_plane_cpu().items()}
    return Measured(in_flight / elapsed * 60, cpu / in_flight, before_api,
                    b.apiserver_requests(), plane)


def record_cpu(out: Report, label: str, m: Measured, in_flight: int) -> None:
    """The controller's CPU per run (recorded by the caller), the API server's, and all of it:
    every control plane process's and the controller's together."""
    out.record(f"{label}API server CPU per run, {in_flight} in flight", m.plane["kube-apiserver"],
               "s")
    parts = ", ".join(f"{k} {1000 * v:.0f}" for k, v in m.plane.items())
    out.record(f"{label}CPU per run, every process, {in_flight} in flight",
               m.cpu + sum(m.plane.values()), "s", note=f"ms: controller {1000 * m.cpu:.0f}, "
               f"{parts}")


def writes_per_run(before: Counter[tuple[str, str, str]], after: Counter[tuple[str, str, str]],
                   runs: int) -> float:
    """Every client's writes per run, as the API server counted them."""
    return sum(after[k] - before[k] for k in after if k[0] in MUTATING) / runs


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
    # Everything the API server wrote for these runs, whoever asked (the scheduler, kwok as the
    # kubelet, the controllers): where the rest of a run's cost in the cluster goes; its
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


# -- 5. the peers -----------------------------------------------------------------------------


def peer(b: Bench, out: Report, system: System, sizes: tuple[int, ...], stop_n: int) -> None:
    """The diamond at each size and the stop case, on a peer as it was started: the figures
    runctl's own scenarios record, named for the peer and its settings."""
    for n in sizes:
        ns = b.namespace(f"peer-tput-{n}")
        m = measure_runs(b, system, ns, n)
        out.record(f"{system.label}: throughput, 5-step diamond runs, {n} in flight", m.per_min,
                   "runs/min")
        out.record(f"{system.label}: writes per run by every client, {n} in flight "
                   "(API server's count)", writes_per_run(m.before, m.after, n), "")
        out.record(f"{system.label}: controller CPU per run, {n} in flight", m.cpu, "s")
        record_cpu(out, f"{system.label}: ", m, n)
        b.drop_namespace(ns)
    ns = b.namespace(f"peer-stop-{stop_n}")
    bodies = [system.long_run(f"r{i}") for i in range(stop_n)]
    record_stop(out, f"{system.label}: stop latency, {stop_n} concurrent", stop_n,
                *measure_stop(b, system, ns, bodies), target=False)
    b.drop_namespace(ns)


# -- 4. memory -------------------------------------------------------------------------------


def memory(b: Bench, out: Report, steprun_counts: list[int]) -> str:
    """RSS at each count of active StepRuns; returns the namespace, left running (with the
    operator's finalizers on its StepRuns) for the caller to drop while the operator runs."""
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
    return ns

"""Prometheus metrics the operator exports (served on --metrics-port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RUNS = Gauge("runctl_storyruns", "StoryRuns the operator knows, by phase.", ["phase"])
STEPS = Gauge("runctl_steps", "Steps of known StoryRuns, by phase.", ["phase"])
RECONCILE_SECONDS = Histogram(
    "runctl_reconcile_duration_seconds", "Time to observe, decide and apply one run.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
STOP_LATENCY = Histogram(
    "runctl_stop_latency_seconds",
    "From a stop being observed to the run being recorded terminal.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
API_CALLS = Counter(
    "runctl_api_requests_total",
    "API requests made by the operator, by verb, resource and outcome.",
    ["verb", "resource", "outcome"],
)

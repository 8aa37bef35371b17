"""Request counters read from Prometheus text: the API server's and runctl's own.

Pure functions of the exposition text, parsed by prometheus_client's own parser (the format has
escapes, comments and suffixed samples that a line pattern gets wrong), so the harness only has
to fetch the text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def samples(text: str, name: str) -> Iterator[Sample]:
    """Every sample called `name` (a counter's `_total` series, say) in the text."""
    for family in text_string_to_metric_families(text):
        yield from (s for s in family.samples if s.name == name)


def apiserver_requests(text: str) -> Counter[tuple[str, str, str]]:
    """apiserver_request_total by (verb, resource, subresource)."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for s in samples(text, "apiserver_request_total"):
        key = (s.labels.get("verb", ""), s.labels.get("resource", ""),
               s.labels.get("subresource", ""))
        counts[key] += int(s.value)
    return counts


def operator_requests(text: str) -> Counter[tuple[str, str]]:
    """runctl's own count of its API requests by (verb, resource), whatever the outcome, and by
    ("conflicts", "") those the API server refused as written on a stale view."""
    counts: Counter[tuple[str, str]] = Counter()
    for s in samples(text, "runctl_api_requests_total"):
        n = int(s.value)
        counts[(s.labels["verb"], s.labels["resource"])] += n
        if s.labels.get("outcome") == "conflict":
            counts[("conflicts", "")] += n
    return counts


def reconciles(text: str) -> tuple[float, float]:
    """runctl's reconciles so far and their seconds in all, from its duration histogram."""
    return (sum(s.value for s in samples(text, "runctl_reconcile_duration_seconds_count")),
            sum(s.value for s in samples(text, "runctl_reconcile_duration_seconds_sum")))

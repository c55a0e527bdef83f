"""Reading /metrics in tests: every sample as {(name, sorted labels): value}."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(body: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def scrape(client) -> Samples:  # type: ignore[no-untyped-def]
    """From Django's test client (in-process)."""
    return parse(client.get("/metrics").content.decode())


def scrape_url(url: str) -> Samples:
    """From a server process."""
    return parse(httpx.get(f"{url}/metrics", timeout=10).text)

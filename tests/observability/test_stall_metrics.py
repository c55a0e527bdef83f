"""A web process reports its own stalls: the event loop's lag, sampled four times a second, and every pass of
the cyclic garbage collector by generation. Against a real server process."""

from __future__ import annotations

import time

from tests.support.metrics import scrape_url


def count(samples, name: str, **labels: str) -> float:
    return samples[(f"{name}_count", tuple(sorted(labels.items())))]


def test_the_event_loop_lag_is_sampled_and_gc_passes_are_timed(start_server):
    server = start_server()
    first = scrape_url(server.url)
    time.sleep(1.2)
    second = scrape_url(server.url)
    # At least four samples in 1.2 s (one each 0.25 s), nearly all of them on time on an idle process.
    lag = count(second, "scheduler_event_loop_lag_seconds") - count(first, "scheduler_event_loop_lag_seconds")
    assert lag >= 4
    on_time = second[("scheduler_event_loop_lag_seconds_bucket", (("le", "0.1"),))]
    assert on_time >= count(second, "scheduler_event_loop_lag_seconds") - 1
    # Every generation has its series from the start (a pass is rare: see the test below).
    assert {("generation", g) for g in "012"} <= {
        labels[0] for (name, labels) in second if name == "scheduler_gc_pause_seconds_count"
    }


def test_a_garbage_collector_pass_is_timed_by_generation():
    import gc

    from prometheus_client import REGISTRY

    from scheduler import background

    def passes(generation: str) -> float:
        return REGISTRY.get_sample_value("scheduler_gc_pause_seconds_count", {"generation": generation}) or 0.0

    background._watch_gc()
    background._watch_gc()  # once only, however often the loop is started
    before = passes("2"), passes("1")
    gc.collect(2)
    gc.collect(1)
    assert (passes("2"), passes("1")) == (before[0] + 1, before[1] + 1)

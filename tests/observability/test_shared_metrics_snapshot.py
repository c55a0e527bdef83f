"""The live-state gauges of /metrics come from one snapshot shared by every scrape of every instance for
METRICS_SNAPSHOT_MAX_AGE_S (refreshed by the Celery beat), so a scrape costs one GET instead of a read of
every node and pool. Real Redis: the suite's own process, its command counts read from INFO."""

from __future__ import annotations

import redis

from console import collector as metrics
from console.tasks import refresh_metrics_snapshot
from scheduler import background


def instances(rows: dict) -> float:
    [(labels, value)] = rows["instances"]
    return value


def calls(client: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(stats["calls"]) for name, stats in client.info("commandstats").items()}


async def test_scrapes_within_the_age_serve_the_shared_copy_until_it_is_refreshed(settings) -> None:
    first = await metrics.shared_rows(60)
    await background._advertise(0)  # the state changes: one instance now advertises itself

    assert instances(first) == 0
    assert instances(await metrics.shared_rows(60)) == 0
    assert instances(await metrics.live_rows()) == 1
    await metrics.refresh_shared_rows(60)
    assert instances(await metrics.shared_rows(60)) == 1


async def test_a_scrape_served_from_the_shared_copy_is_one_get(settings, redis_url) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    await metrics.shared_rows(60)
    before = calls(client)

    await metrics.shared_rows(60)

    after = calls(client)
    spent = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    assert spent == {"get": 1, "info": 1}


async def test_a_max_age_of_zero_reads_redis_on_every_scrape(settings) -> None:
    await metrics.shared_rows(0)
    await background._advertise(0)

    assert instances(await metrics.shared_rows(0)) == 1


def test_the_beat_task_refreshes_the_shared_copy(settings) -> None:
    settings.METRICS_SNAPSHOT_MAX_AGE_S = 60
    from core.redis import run_sync

    assert instances(run_sync(metrics.shared_rows, 60)) == 0
    run_sync(background._advertise, 0)

    refresh_metrics_snapshot()

    assert instances(run_sync(metrics.shared_rows, 60)) == 1

"""The leader lease and fencing epoch, against a real Redis, with the leaders' clocks under test control."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from core import audit
from core.redis import get_redis, keys
from pools import rebuild
from pools import services as pools
from pools.leader import Leader
from pools.models import LeaderEpoch, PoolConfigVersion
from tests.pools.test_pool_membership import start

pytestmark = pytest.mark.django_db(transaction=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def short_lease(settings):
    settings.POOL_LEASE_TTL_S = 0.3
    settings.POOL_LEADER_GIVE_UP_S = 10.0
    settings.POOL_REBUILD_INTERVAL_S = 10.0


async def holder_in_redis() -> str | None:
    value = await get_redis().get(keys().pool_lease)
    return value.rpartition("|")[0] if value else None


async def test_one_process_acquires_and_the_other_finds_the_lease_held():
    a, b = Leader("a", Clock()), Leader("b", Clock())
    await a.step()
    await b.step()
    assert (a.epoch, b.epoch) == (1, None)
    assert await holder_in_redis() == "a"
    await a.step()  # renewal keeps the epoch
    assert a.epoch == 1


async def test_an_expired_lease_goes_to_another_process_with_the_next_epoch_and_the_old_holder_stops():
    a, b = Leader("a", Clock()), Leader("b", Clock())
    await a.step()
    await asyncio.sleep(0.4)  # a missed its renewals (paused): the 0.3 s lease expired
    await b.step()
    assert b.epoch == 2
    await a.step()  # a's renewal finds the lease gone: it resigns, and cannot take it while b holds it
    assert a.epoch is None
    assert a.changes == [("acquired", 1), ("lost", 1)]


async def test_a_leader_that_could_not_renew_for_ten_seconds_stops_acting_by_its_own_clock():
    clock = Clock()
    a = Leader("a", clock)
    await a.step()
    assert a.acting()
    clock.now += 10.5
    assert not a.acting()
    await a.step()
    assert a.changes[-1] == ("lost", 1)


async def test_a_write_with_an_old_epoch_is_refused_and_counted():
    await start(["en", "zh"])
    a, b = Leader("a", Clock()), Leader("b", Clock())
    await a.step()
    await asyncio.sleep(0.4)
    await b.step()
    outcome = await rebuild.rebuild_config(1, "a", force=True)
    assert outcome.result == "stale_epoch"
    assert int(await get_redis().hget(keys().pool_config, "stale_refusals")) == 1
    assert (await pools.current_config()).epoch == 2


async def test_the_new_leader_writes_the_configuration_once_and_then_only_on_change():
    await start(["en", "zh"])
    version = (await pools.current_config()).version
    a = Leader("a", Clock())
    await a.step()
    config = await pools.current_config()
    assert (config.version, config.epoch, config.generated_by) == (version + 1, 1, "a")
    assert (await rebuild.rebuild_config(1, "a")).result == "unchanged"


async def test_a_rebuild_never_erases_a_pool_created_after_it_read_the_configuration():
    await start(["en", "zh"])
    a = Leader("a", Clock())
    await a.step()
    read_before = (await pools.current_config()).version

    await start(["de", "en"])  # dynamic creation on another instance: version moves
    outcome = await rebuild.rebuild_config(a.epoch, "a", force=True)

    assert outcome.result == "written"
    assert outcome.version == read_before + 2
    assert {p.name for p in (await pools.current_config()).pools} == {"en-zh", "de-en"}


async def test_after_redis_loses_everything_the_epoch_and_the_version_continue_upwards():
    await start(["en", "zh"])
    a = Leader("a", Clock())
    await a.step()
    await database_sync_to_async(audit.drain)()
    epoch, version = a.epoch, (await pools.current_config()).version
    assert await database_sync_to_async(LeaderEpoch.floor)() == epoch

    await get_redis().flushall()
    await a.step()  # renewal finds nothing: resigns, then acquires again above the database's mark
    assert a.epoch == epoch + 1
    await start(["en", "zh"])  # the node re-registers
    config = await pools.current_config()
    assert config.epoch == epoch + 1
    assert config.version > version
    assert [p.name for p in config.pools] == ["en-zh"]


async def test_every_version_is_mirrored_to_the_database_with_its_epoch_and_change():
    await start(["en", "zh"])
    a = Leader("a", Clock())
    await a.step()
    await database_sync_to_async(audit.drain)()
    rows = await database_sync_to_async(lambda: list(PoolConfigVersion.objects.order_by("version")))()
    assert [(r.version, r.epoch, r.change) for r in rows] == [
        (1, 0, {"added": ["en-zh"], "removed": []}),
        (2, 1, {"added": [], "removed": []}),
    ]
    history = [json.loads(e) for e in await get_redis().lrange(keys().pool_history, 0, -1)]
    assert [(h["version"], h["epoch"]) for h in history] == [(2, 1), (1, 0)]


async def test_reconcile_drops_members_that_do_not_belong_and_restores_missing_ones():
    node_id, _ = await start(["en", "zh"])
    client = get_redis()
    await client.srem(keys().pool_members("en-zh"), node_id)
    await client.sadd(keys().pool_members("en-zh"), "node-GHOST000")
    fixes = await rebuild.reconcile_membership()
    assert fixes == {"added": 1, "removed": 1}
    assert await client.smembers(keys().pool_members("en-zh")) == {node_id}

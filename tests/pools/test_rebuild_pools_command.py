"""`manage.py rebuild_pools`: asks the leader and waits for its new version; with no leader it says so, and
with --acquire acts as the leader for one round and gives the lease back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from core.redis import get_sync_redis, keys, run_sync
from pools import services as pools
from pools.leader import LeaderThread
from pools.models import LeaderEpoch
from tests.pools.test_pool_membership import start

pytestmark = pytest.mark.django_db(transaction=True)


def rebuild_pools(*args: str) -> str:
    out = StringIO()
    call_command("rebuild_pools", *args, stdout=out)
    return out.getvalue()


def config() -> pools.PoolConfig:
    return run_sync(pools.current_config)


def test_with_no_leader_it_says_so_and_fails_without_changing_anything() -> None:
    run_sync(start, ["en", "zh"])

    with pytest.raises(CommandError, match="no process holds the pool leader lease.*--acquire"):
        rebuild_pools()

    assert config().version == 1


def test_with_acquire_it_rebuilds_under_a_fresh_epoch_and_releases_the_lease() -> None:
    run_sync(start, ["en", "zh"])
    before = config()

    output = rebuild_pools("--acquire")

    after = config()
    assert after.epoch > before.epoch
    assert after.version == before.version + 1
    assert after.generated_by.startswith("rebuild_pools/")
    assert get_sync_redis().get(keys().pool_lease) is None
    assert LeaderEpoch.floor() == after.epoch
    assert "acting as the leader for one round" in output
    assert f"Rebuilt with epoch {after.epoch} and released the lease." in output
    assert f"Pool configuration v{after.version}" in output
    assert "en-zh" in output and "overflow" in output


@pytest.fixture
def running_leader(settings) -> Iterator[LeaderThread]:
    settings.POOL_LEASE_RENEW_S = 0.05
    settings.POOL_REBUILD_INTERVAL_S = 0.3
    thread = LeaderThread(holder="worker-1/test")
    thread.start()
    yield thread
    thread.stop()


def test_with_a_leader_running_it_waits_for_the_version_the_leader_writes(
    running_leader: LeaderThread,
) -> None:
    run_sync(start, ["en", "zh"])
    deadline = time.monotonic() + 5
    while config().generated_by != "worker-1/test":  # the new leader's first, forced, rebuild
        assert time.monotonic() < deadline, "the leader never wrote its first configuration"
        time.sleep(0.05)
    before = config().version

    output = rebuild_pools("--wait", "5")

    assert config().version > before
    assert (
        f"Asked the leader worker-1/test (epoch 1) to rebuild; waiting up to 5 s for a version after v{before}"
        in output
    )
    assert f"Pool configuration v{config().version}" in output


def test_a_leader_that_writes_nothing_within_the_wait_makes_it_fail_saying_so() -> None:
    run_sync(start, ["en", "zh"])
    get_sync_redis().set(keys().pool_lease, "stuck-worker|4", px=10_000)

    with pytest.raises(CommandError, match="nothing rebuilt within 0.3 s: the configuration is still v1"):
        rebuild_pools("--wait", "0.3")

    assert get_sync_redis().get(keys().pool_rebuild_request) is not None

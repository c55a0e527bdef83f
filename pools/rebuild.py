"""The leader's work: derive the pool configuration from the live nodes, write it (fenced), mirror it, and
make pool membership match it."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from core import audit, metrics, scripts
from core.redis import get_redis, keys
from nodes.health import pool_name
from pools.eligibility import OVERFLOW, Pool
from pools.models import PoolConfigVersion
from pools.services import PoolConfig, _parse, wants_membership

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveNode:
    node_id: str
    status: str
    ready_services: frozenset[str]
    languages: tuple[str, ...]
    member_of: str

    @property
    def wants_pool(self) -> bool:
        return wants_membership(self.status, set(self.ready_services), list(self.languages))


@dataclass(frozen=True)
class RebuildOutcome:
    result: str  # written | unchanged | stale_epoch | version_moved | not_leader
    version: int = 0
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


async def live_nodes() -> list[LiveNode]:
    k = keys()
    client = get_redis()
    node_ids = sorted(await client.smembers(k.nodes_all))
    async with client.pipeline(transaction=False) as pipe:
        for node_id in node_ids:
            pipe.hmget(k.node_meta(node_id), ["status", "drained", "languages", "member_of"])
            pipe.hgetall(k.node_capabilities(node_id))
        replies = await pipe.execute()
    nodes = []
    for index, node_id in enumerate(node_ids):
        (status, drained, languages, member_of), capabilities = replies[2 * index : 2 * index + 2]
        if status is None:
            continue
        effective = "draining" if drained == "1" and status != "offline" else status
        ready = frozenset(kind for kind, raw in capabilities.items() if json.loads(raw).get("ready"))
        nodes.append(LiveNode(node_id, effective, ready, tuple(json.loads(languages or "[]")), member_of or ""))
    return nodes


def derive_pools(nodes: list[LiveNode], current: PoolConfig) -> tuple[Pool, ...]:
    """Pools from live nodes: one per language set with at least `POOL_MIN_NODES_PER_POOL` eligible nodes,
    the most populated first, at most `POOL_MAX_POOLS`; a set keeps its pool id across rebuilds."""
    counts = Counter(pool_name(list(node.languages)) for node in nodes if node.wants_pool)
    chosen = sorted(
        (name for name, count in counts.items() if count >= settings.POOL_MIN_NODES_PER_POOL),
        key=lambda name: (-counts[name], name),
    )[: settings.POOL_MAX_POOLS]
    known = {pool.name: pool.pool_id for pool in current.pools}
    next_id = max([current.next_pool_id, *(pool_id + 1 for pool_id in known.values())])
    pools = []
    for name in sorted(chosen, key=lambda n: known.get(n, 10**9)):
        pool_id = known.get(name)
        if pool_id is None:
            pool_id, next_id = next_id, next_id + 1
        pools.append(Pool(pool_id, name, tuple(name.split("-")), tuple(settings.POOL_REQUIRED_SERVICES)))
    return tuple(sorted(pools, key=lambda pool: pool.pool_id))


async def rebuild_config(
    epoch: int, holder: str, *, force: bool = False, still_leader: Callable[[], bool] = lambda: True
) -> RebuildOutcome:
    """Steps: read the configuration and the live nodes; derive the pools; unless forced, stop when nothing
    changed; write with the epoch and the version read (a version that moved meanwhile means a pool was
    created: read again, at most three times); mirror the new version to the audit trail."""
    k = keys()
    client = get_redis()
    started = time.perf_counter()
    for _ in range(3):
        current = _parse(await client.hgetall(k.pool_config))
        pools = derive_pools(await live_nodes(), current)
        before = {pool.name for pool in current.pools}
        after = {pool.name for pool in pools}
        if not force and pools == current.pools:
            return RebuildOutcome("unchanged", current.version)
        if not still_leader():
            return RebuildOutcome("not_leader")
        change = {"added": sorted(after - before), "removed": sorted(before - after)}
        floor = await database_sync_to_async(PoolConfigVersion.highest_version)()
        next_id = max([current.next_pool_id, *(pool.pool_id + 1 for pool in pools)])
        result = await scripts.run(
            "pool_config_write",
            [k.pool_config, k.pool_epoch, k.pool_history],
            [
                epoch, current.version, json.dumps([pool.to_dict() for pool in pools]), holder, floor, next_id,
                json.dumps(change), settings.POOL_HISTORY_LENGTH,
            ],
        )
        if result[0] == "VERSION_MOVED":
            continue
        if result[0] == "STALE_EPOCH":
            log.warning(
                "pool configuration write refused: a newer leader exists",
                extra={"event": "pool_write_refused", "reason": f"epoch {epoch} < {result[1]}"},
            )
            return RebuildOutcome("stale_epoch")
        version, at = int(result[1]), int(result[2])
        metrics.POOL_REBUILD_SECONDS.observe(time.perf_counter() - started)
        await audit.record(
            "pools", version=version, epoch=epoch, generated_by=holder, generated_at=at,
            pools=[pool.to_dict() for pool in pools], change=change,
        )
        log.info(
            "pool configuration written",
            extra={"event": "pool_config_written", "reason": f"v{version} epoch {epoch} {change}"},
        )
        return RebuildOutcome("written", version, tuple(change["added"]), tuple(change["removed"]))
    return RebuildOutcome("version_moved")


async def reconcile_membership(config: PoolConfig | None = None) -> dict[str, int]:
    """Make every membership set hold exactly the live nodes that belong to it: drops offline, drained and
    moved nodes, restores missing live ones (after a flush, a lost update, a crashed instance)."""
    k = keys()
    client = get_redis()
    config = config or _parse(await client.hgetall(k.pool_config))
    desired: dict[str, set[str]] = {pool.name: set() for pool in config.with_overflow()}
    nodes = await live_nodes()
    fixes = {"added": 0, "removed": 0}
    async with client.pipeline(transaction=False) as pipe:
        for node in nodes:
            target = ""
            if node.wants_pool:
                own = pool_name(list(node.languages))
                target = own if own in desired else OVERFLOW
                desired[target].add(node.node_id)
            if node.member_of != target:
                pipe.hset(k.node_meta(node.node_id), "member_of", target)
        names = sorted(set(desired) | {node.member_of for node in nodes if node.member_of})
        for name in names:
            pipe.smembers(k.pool_members(name))
        replies = await pipe.execute()
    actual = dict(zip(names, replies[len(replies) - len(names) :], strict=True))
    async with client.pipeline(transaction=False) as pipe:
        for name, members in actual.items():
            extra = members - desired.get(name, set())
            missing = desired.get(name, set()) - members
            if extra:
                pipe.srem(k.pool_members(name), *extra)
                fixes["removed"] += len(extra)
            if missing:
                pipe.sadd(k.pool_members(name), *missing)
                fixes["added"] += len(missing)
        await pipe.execute()
    return fixes


async def rebuild_and_reconcile(
    epoch: int, holder: str, *, force: bool = False, still_leader: Callable[[], bool] = lambda: True
) -> RebuildOutcome:
    outcome = await rebuild_config(epoch, holder, force=force, still_leader=still_leader)
    if outcome.result in ("written", "unchanged") and still_leader():
        # A request is answered only once a rebuild went through; a refused one leaves it for the next leader.
        await get_redis().delete(keys().pool_rebuild_request)
        await reconcile_membership()
    return outcome


async def rebuild_requested() -> bool:
    return bool(await get_redis().exists(keys().pool_rebuild_request))


async def request_rebuild(actor: str) -> int:
    """Ask the leader for a rebuild at its next round (within POOL_LEASE_RENEW_S); returns the version now,
    so a caller can wait for it to change."""
    client = get_redis()
    await client.set(keys().pool_rebuild_request, actor, ex=60)
    return int(await client.hget(keys().pool_config, "version") or 0)


def summary(outcome: RebuildOutcome) -> dict[str, Any]:
    return {"result": outcome.result, "version": outcome.version, "added": list(outcome.added), "removed": list(outcome.removed)}

"""Pools: the shared configuration in Redis, dynamic creation, and which pool each node is a member of.

The configuration is one Redis hash (version, epoch, JSON document) changed only by two scripts: dynamic
creation (`pool_ensure.lua`, any instance, when a node of a new language set arrives) and the leader's
rebuild (`pool_config_write.lua`, fenced by epoch and compare-and-set on the version). Every instance reads
it from Redis; a process caches the parsed document only keyed by its version, so it never acts on a
configuration other than the current one.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from core import audit, scripts
from core.redis import PIPELINE_CHUNK, get_redis, keys, read_chunked
from nodes.health import pool_name
from pools.eligibility import OVERFLOW, Pool
from pools.models import LeaderEpoch, PoolConfigVersion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolConfig:
    version: int
    epoch: int
    generated_at: int
    generated_by: str
    pools: tuple[Pool, ...]
    next_pool_id: int = 1

    @property
    def names(self) -> set[str]:
        return {pool.name for pool in self.pools}

    def with_overflow(self) -> tuple[Pool, ...]:
        """The configured pools plus the overflow pool every job may also look in."""
        return (*self.pools, Pool(0, OVERFLOW, (), tuple(settings.POOL_REQUIRED_SERVICES)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "epoch": self.epoch,
            "generated_at": self.generated_at,
            "generated_by": self.generated_by,
            "pools": [pool.to_dict() for pool in self.pools],
        }


EMPTY = PoolConfig(version=0, epoch=0, generated_at=0, generated_by="", pools=())


@dataclass
class _Cache:
    config: PoolConfig = field(default_factory=lambda: EMPTY)


_cache = _Cache()


def _parse(fields: dict[str, str]) -> PoolConfig:
    if not fields.get("json"):
        return EMPTY
    document = json.loads(fields["json"])
    return PoolConfig(
        version=int(document["version"]),
        epoch=int(document["epoch"]),
        generated_at=int(document["generated_at"]),
        generated_by=document["generated_by"],
        pools=tuple(Pool.from_dict(pool) for pool in document["pools"]),
        next_pool_id=int(fields.get("next_pool_id") or 1),
    )


def cached_config() -> PoolConfig:
    """The configuration this process read last, without asking Redis: for callers that check its version
    in a round trip they make anyway (job selection)."""
    return _cache.config


async def current_config() -> PoolConfig:
    """The configuration as Redis has it now (one HGET when the cached version is still current)."""
    client = get_redis()
    version = int(await client.hget(keys().pool_config, "version") or 0)
    if version != _cache.config.version or version == 0:
        _cache.config = _parse(await client.hgetall(keys().pool_config))
    return _cache.config


async def ensure_pool(languages: list[str], created_by: str) -> str:
    """The pool a node of this language set joins: its own (created now if absent) or, past
    `POOL_MAX_POOLS` or below `POOL_MIN_NODES_PER_POOL`, the overflow pool."""
    name = pool_name(languages)
    if settings.POOL_MIN_NODES_PER_POOL > 1:
        # A set needs several nodes before it gets a pool; the leader's rebuild creates it when it has them.
        config = await current_config()
        return name if name in config.names else OVERFLOW
    k = keys()
    args: list[str | int] = [
        name, json.dumps(name.split("-")), json.dumps(settings.POOL_REQUIRED_SERVICES), settings.POOL_MAX_POOLS,
        created_by, "", settings.POOL_HISTORY_LENGTH, 0,
    ]
    result = await scripts.run("pool_ensure", [k.pool_config, k.pool_epoch, k.pool_history], args)
    if result[0] == "NO_CONFIG":
        # Redis has no configuration (first start, or it lost its data): continue versions from the audit
        # mirror so they never go backwards.
        args[5] = await database_sync_to_async(PoolConfigVersion.highest_version)()
        args[7] = await database_sync_to_async(LeaderEpoch.floor)()
        result = await scripts.run("pool_ensure", [k.pool_config, k.pool_epoch, k.pool_history], args)
    if result[0] == "FULL":
        return OVERFLOW
    if result[0] == "CREATED":
        _, pool_id, version, at = result
        log.info("pool created", extra={"event": "pool_created", "reason": name})
        config = await current_config()
        await audit.record(
            "pools", version=int(version), epoch=config.epoch, generated_by=created_by, generated_at=int(at),
            pools=[pool.to_dict() for pool in config.pools], change={"added": [name], "removed": []},
        )
    return name


def wants_membership(status: str, ready_services: set[str], languages: list[str]) -> bool:
    """A node belongs in a pool while it is reachable, not drained, has the pools' required services
    (`POOL_REQUIRED_SERVICES`: ASR, NMT and TTS) ready and knows its language set; selection later narrows
    members to those `ready` and to the services a job's pipeline needs."""
    required = set(settings.POOL_REQUIRED_SERVICES)
    return status not in ("offline", "draining") and required <= ready_services and bool(pool_name(languages))


async def place_node(node_id: str, *, member: bool, languages: list[str], member_of: str, actor: str) -> str:
    """Make the node a member of exactly the pool it belongs to (or of none); returns that pool's name.

    Steady state costs nothing: a node already in its own set's pool stays there without a Redis call.
    """
    target = ""
    if member:
        own = pool_name(languages)
        if member_of == own:
            return member_of
        target = await ensure_pool(languages, actor)
    if target == member_of:
        return member_of
    k = keys()
    async with get_redis().pipeline(transaction=False) as pipe:
        if member_of:
            pipe.srem(k.pool_members(member_of), node_id)
        if target:
            pipe.sadd(k.pool_members(target), node_id)
        pipe.hset(k.node_meta(node_id), "member_of", target)
        await pipe.execute()
    return target


async def resync_node(node_id: str, actor: str) -> str:
    """Re-derive a node's membership from what Redis holds about it (after drain, undrain, offline)."""
    k = keys()
    client = get_redis()
    async with client.pipeline(transaction=False) as pipe:
        pipe.hmget(k.node_meta(node_id), ["status", "drained", "languages", "member_of"])
        pipe.hgetall(k.node_capabilities(node_id))
        (status, drained, languages, member_of), capabilities = await pipe.execute()
    if status is None:
        return ""
    effective = "draining" if drained == "1" and status != "offline" else status
    ready = {kind for kind, raw in capabilities.items() if json.loads(raw).get("ready")}
    langs = json.loads(languages or "[]")
    return await place_node(
        node_id, member=wants_membership(effective, ready, langs), languages=langs, member_of=member_of or "", actor=actor
    )


async def pool_sizes() -> dict[str, dict[str, int]]:
    """Per pool (overflow included): members, how many are `ready` now, and the slots of its members:
    reserved (assigned, not yet taken), running, and the declared capacity. Two round trips."""
    config = await current_config()
    k = keys()
    client = get_redis()
    names = [pool.name for pool in config.with_overflow()]
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.smembers(k.pool_members(name))
        memberships = [sorted(members) for members in await pipe.execute()]
    now_ms = int(time.time() * 1000)

    def queue(pipe: Any, node_id: str) -> None:
        pipe.hmget(k.node_meta(node_id), ["status", "drained"])
        pipe.hget(k.node_cap(node_id), "max")
        # Slot entries are scored by their own expiry: only live ones count.
        pipe.zcount(k.node_reservations(node_id), now_ms, "+inf")
        pipe.zcount(k.node_running(node_id), now_ms, "+inf")

    replies = iter(await read_chunked([node_id for members in memberships for node_id in members], queue, PIPELINE_CHUNK // 4))
    sizes: dict[str, dict[str, int]] = {}
    for name, members in zip(names, memberships, strict=True):
        row = {"size": len(members), "ready": 0, "capacity": 0, "reserved": 0, "running": 0}
        for _ in members:
            (status, drained), capacity, reserved, running = next(replies), next(replies), next(replies), next(replies)
            row["ready"] += status == "ready" and drained != "1"
            row["capacity"] += int(capacity or 0)
            row["reserved"] += int(reserved)
            row["running"] += int(running)
        sizes[name] = row
    return sizes

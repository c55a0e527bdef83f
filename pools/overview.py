"""What operators see of the pool plane and the cluster, read once per page, answer, command or scrape: the
configuration with live pool sizes, who holds the leader lease, and the web instances that advertise
themselves. Read-only: nothing here writes Redis."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.redis import get_redis, keys
from nodes.services import status_counts
from pools.services import current_config, pool_sizes


@dataclass(frozen=True)
class PoolRow:
    pool_id: int
    name: str
    languages: tuple[str, ...]
    required_services: tuple[str, ...]
    size: int
    ready: int
    capacity: int = 0  # slots its members declare
    reserved: int = 0  # slots assigned, not yet taken by the node
    running: int = 0  # slots running a job

    def to_dict(self) -> dict[str, Any]:
        return {
            "pool_id": self.pool_id,
            "name": self.name,
            "languages": list(self.languages),
            "required_services": list(self.required_services),
            "size": self.size,
            "ready": self.ready,
            "capacity": self.capacity,
            "reserved": self.reserved,
            "running": self.running,
        }


@dataclass(frozen=True)
class PoolOverview:
    version: int
    epoch: int  # the epoch of the configuration's last write
    generated_at_ms: int  # 0 while no configuration exists
    generated_by: str
    leader: str | None  # holder of the lease; None when nobody holds it
    leader_epoch: int | None
    highest_epoch: int  # the fencing counter: every acquisition so far
    leader_changes: int
    stale_refusals: int
    pools: tuple[PoolRow, ...]  # the overflow pool last, with pool id 0

    @property
    def generated_at(self) -> datetime | None:
        return datetime.fromtimestamp(self.generated_at_ms / 1000, UTC) if self.generated_at_ms else None


def parse_lease(value: str | None) -> tuple[str, int] | None:
    """The lease value "<holder>|<epoch>" as (holder, epoch); the holder may itself contain '|'."""
    if not value:
        return None
    holder, _, epoch = value.rpartition("|")
    return holder, int(epoch) if epoch.isdigit() else 0


async def read_leader() -> tuple[str, int] | None:
    """(holder, epoch) of the leader lease, or None when no process holds it."""
    return parse_lease(await get_redis().get(keys().pool_lease))


async def read_overview() -> PoolOverview:
    """Steps: the configuration (one HGET while the cached version is current), the size of every pool,
    then the lease, the epoch counter and the counters in one round trip."""
    config = await current_config()
    sizes = await pool_sizes()
    k = keys()
    async with get_redis().pipeline(transaction=False) as pipe:
        pipe.get(k.pool_lease)
        pipe.get(k.pool_epoch)
        pipe.get(k.pool_leader_changes)
        pipe.hget(k.pool_config, "stale_refusals")
        lease, highest, changes, refusals = await pipe.execute()
    holder = parse_lease(lease)
    # pool_sizes reads the configuration again: a pool created in between has no size here yet, not an error.
    empty = {"size": 0, "ready": 0}
    rows = tuple(
        PoolRow(pool.pool_id, pool.name, pool.languages, pool.required_services, **sizes.get(pool.name, empty))
        for pool in config.with_overflow()
    )
    return PoolOverview(
        version=config.version,
        epoch=config.epoch,
        generated_at_ms=config.generated_at,
        generated_by=config.generated_by,
        leader=holder[0] if holder else None,
        leader_epoch=holder[1] if holder else None,
        highest_epoch=int(highest or 0),
        leader_changes=int(changes or 0),
        stale_refusals=int(refusals or 0),
        pools=rows,
    )


@dataclass(frozen=True)
class Instance:
    instance_id: str
    last_seen: float  # unix seconds, from the instances index
    host: str = ""
    pid: int = 0
    started_at: float = 0.0
    node_sockets: int = 0
    advertised: bool = False  # False once its own hash expired: the process stopped advertising

    def uptime_s(self, now: float) -> float | None:
        return now - self.started_at if self.advertised and self.started_at else None


async def read_instances() -> list[Instance]:
    """Web instances, most recently seen first, from the index and each instance's hash."""
    k = keys()
    client = get_redis()
    index = await client.zrevrange(k.instances, 0, -1, withscores=True)
    async with client.pipeline(transaction=False) as pipe:
        for instance_id, _ in index:
            pipe.hgetall(k.instance(instance_id))
        hashes = await pipe.execute()
    instances = []
    for (instance_id, seen), fields in zip(index, hashes, strict=True):
        instances.append(
            Instance(
                instance_id=instance_id,
                last_seen=float(fields.get("seen_at") or seen),
                host=fields.get("host", ""),
                pid=int(fields.get("pid") or 0),
                started_at=float(fields.get("started_at") or 0),
                node_sockets=int(fields.get("node_sockets") or 0),
                advertised=bool(fields),
            )
        )
    return instances


@dataclass(frozen=True)
class ClusterStatus:
    read_at: float
    instances: list[Instance]
    pools: PoolOverview
    nodes_by_status: dict[str, int]


async def read_cluster_status() -> ClusterStatus:
    return ClusterStatus(
        read_at=time.time(),
        instances=await read_instances(),
        pools=await read_overview(),
        nodes_by_status=await status_counts(),
    )


def pool_table(rows: tuple[PoolRow, ...]) -> list[str]:
    """The pools as aligned text lines for the management commands."""
    header = ("ID", "POOL", "LANGUAGES", "SIZE", "READY")
    cells = [header] + [
        (str(r.pool_id), r.name, ",".join(r.languages) or "-", str(r.size), str(r.ready)) for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [
        "  ".join(
            cell.rjust(w) if i in (0, 3, 4) else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in cells
    ]

"""Redis clients and the key layout of all live state.

Every key that a Lua script touches together with others carries the same `{hash tag}`, so the scripts run
unchanged on Redis Cluster. A job's keys carry the tag of its shard, shared with that shard's deadline index
and audit stream. Global indexes (all nodes, node deadlines, the main audit stream, the pending queue) live in
their own slots and are only ever touched by single-key commands or single-key scripts.
"""

from __future__ import annotations

import asyncio
import weakref
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from asgiref.sync import async_to_sync
from django.conf import settings
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

T = TypeVar("T")
T_item = TypeVar("T_item")

# Errors that mean "Redis is not answering" as opposed to "Redis said no": callers turn these into
# DEPENDENCY_DOWN answers instead of crashing.
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError, asyncio.TimeoutError)

_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()
_sync_client: redis.Redis | None = None


def redis_url() -> str:
    return settings.REDIS_URL or "redis://127.0.0.1:6379/0"


def _retry_async() -> AsyncRetry:
    # After Redis restarts, pooled connections are dead: one quick retry on a fresh connection turns that
    # into a success instead of a DEPENDENCY_DOWN; a Redis that is really down still fails within ~0.2 s.
    return AsyncRetry(ExponentialBackoff(cap=0.2, base=0.05), retries=2, supported_errors=(redis.ConnectionError, redis.TimeoutError))


def _retry_sync() -> Retry:
    return Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=2, supported_errors=(redis.ConnectionError, redis.TimeoutError))


def get_redis() -> aioredis.Redis:
    """The asyncio client of the running event loop (redis-py connections cannot cross loops)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        # A blocking pool: under a burst (hundreds of nodes registering at once) callers wait for a free
        # connection; redis-py's default pool instead fails the 101st concurrent call at once with
        # "Too many connections", which would read as Redis being down.
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url(),
            decode_responses=True,
            max_connections=settings.REDIS_MAX_CONNECTIONS,
            timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
            health_check_interval=30,
            # Connections run commands through their own retry (not the client's), so it goes here.
            retry=_retry_async(),
        )
        client = _async_clients[loop] = aioredis.Redis(connection_pool=pool)
    return client


# Commands per pipeline when reading every node (or every in-flight job): at 10,000 nodes one pipeline would
# pack, send and parse tens of thousands of replies in one turn of the event loop, stalling heartbeats and
# jobs behind it; in chunks, other tasks run between them. redis-py spends about 18 ms of CPU on a pipeline
# of 1,000 HMGETs and 2.7 ms on one of 200 (docs/performance.md): 200 keeps each stall near the job path's
# own latency.
PIPELINE_CHUNK = 200


async def read_chunked(items: Sequence[T_item], queue: Callable[[Any, T_item], None], chunk: int = PIPELINE_CHUNK) -> list[Any]:
    """The replies of `queue(pipe, item)` for every item, in order, `chunk` items per pipeline."""
    client = get_redis()
    replies: list[Any] = []
    for start in range(0, len(items), chunk):
        async with client.pipeline(transaction=False) as pipe:
            for item in items[start : start + chunk]:
                queue(pipe, item)
            replies.extend(await pipe.execute())
    return replies


def get_sync_redis() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        pool = redis.BlockingConnectionPool.from_url(
            redis_url(),
            decode_responses=True,
            max_connections=settings.REDIS_MAX_CONNECTIONS,
            timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
            health_check_interval=30,
            retry=_retry_sync(),
        )
        _sync_client = redis.Redis(connection_pool=pool)
    return _sync_client


def reset_clients() -> None:
    """Forget cached clients (tests point the settings at a fresh Redis)."""
    global _sync_client
    from core import redis_mux

    _sync_client = None
    _async_clients.clear()
    redis_mux.forget()


def run_sync(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run an async service from sync code (admin, Celery, commands).

    A loop that had no client before the call gets its client closed afterwards, so a fresh loop made by
    async_to_sync does not leave sockets behind; a long-lived outer loop keeps its client.
    """

    async def runner() -> T:
        from core import redis_mux

        loop = asyncio.get_running_loop()
        had_client = loop in _async_clients
        had_mux = redis_mux.has_client(loop)
        try:
            return await fn(*args, **kwargs)
        finally:
            if not had_mux:
                redis_mux.forget(loop)
            if not had_client and (client := _async_clients.pop(loop, None)) is not None:
                await client.aclose()

    return async_to_sync(runner)()


# Job keys are spread over this many hash slots (Redis Cluster places each on one master). Fixed, not a
# setting: a job's keys are found from its id, so changing it would lose track of live jobs.
JOB_SHARDS = 16


class Keys:
    """Names of every live key; the prefix comes from REDIS_KEY_PREFIX."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def node_meta(self, node_id: str) -> str:
        return f"{self.prefix}:node:{{{node_id}}}:meta"

    def node_capabilities(self, node_id: str) -> str:
        return f"{self.prefix}:node:{{{node_id}}}:capabilities"

    def node_cap(self, node_id: str) -> str:
        return f"{self.prefix}:node:{{{node_id}}}:cap"

    def node_reservations(self, node_id: str) -> str:
        return f"{self.prefix}:node:{{{node_id}}}:resv"

    def node_keys(self, node_id: str) -> list[str]:
        return [self.node_meta(node_id), self.node_capabilities(node_id), self.node_cap(node_id)]

    @property
    def nodes_all(self) -> str:
        return f"{self.prefix}:nodes:all"

    @property
    def node_deadlines(self) -> str:
        return f"{self.prefix}:nodes:deadlines"

    @property
    def audit_stream(self) -> str:
        return f"{self.prefix}:audit"

    # The pool configuration, its history, the leader lease and the fencing epoch share the {pools} tag:
    # every script over them runs in one slot.
    @property
    def pool_config(self) -> str:
        return f"{self.prefix}:{{pools}}:config"

    @property
    def pool_history(self) -> str:
        return f"{self.prefix}:{{pools}}:history"

    @property
    def pool_lease(self) -> str:
        return f"{self.prefix}:{{pools}}:leader"

    @property
    def pool_epoch(self) -> str:
        return f"{self.prefix}:{{pools}}:epoch"

    @property
    def pool_leader_changes(self) -> str:
        return f"{self.prefix}:{{pools}}:leader_changes"

    @property
    def pool_rebuild_request(self) -> str:
        return f"{self.prefix}:{{pools}}:rebuild_request"

    def pool_members(self, name: str) -> str:
        return f"{self.prefix}:pool:{{{name}}}:members"

    def node_running(self, node_id: str) -> str:
        return f"{self.prefix}:node:{{{node_id}}}:run"

    def node_unavailable(self, node_id: str) -> str:
        return f"{self.prefix}:node:{{{node_id}}}:unavailable"

    # A job's keys carry the tag of its shard, not of the job: the shard's deadline index and audit stream share
    # that tag, so one script changes a job, its deadline and its audit entry together (one hash slot).
    def job_shard(self, job_id: str) -> int:
        return zlib.crc32(job_id.encode()) % JOB_SHARDS

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{{j{self.job_shard(job_id)}}}:{job_id}"

    def job_audio(self, job_id: str) -> str:
        return f"{self.job(job_id)}:audio"

    def job_partials(self, job_id: str) -> str:
        return f"{self.job(job_id)}:partials"

    def job_deadlines(self, shard: int) -> str:
        """Deadline index of one shard: job id scored by its next deadline (ms, Redis clock)."""
        return f"{self.prefix}:jobs:{{j{shard}}}:deadlines"

    def job_audit(self, shard: int) -> str:
        """Audit stream of one shard's jobs (scheduler/audit.py reads it beside the main stream)."""
        return f"{self.prefix}:jobs:{{j{shard}}}:audit"

    def job_slot_keys(self, job_id: str) -> list[str]:
        """The keys every job transition script takes: the job, its shard's deadline index and audit stream."""
        shard = self.job_shard(job_id)
        return [self.job(job_id), self.job_deadlines(shard), self.job_audit(shard)]

    @property
    def job_deadline_indexes(self) -> list[str]:
        return [self.job_deadlines(shard) for shard in range(JOB_SHARDS)]

    @property
    def audit_streams(self) -> list[str]:
        """Every audit stream: nodes and pools write the main one, jobs the one of their shard."""
        return [self.audit_stream, *(self.job_audit(shard) for shard in range(JOB_SHARDS))]

    @property
    def jobs_pending(self) -> str:
        return f"{self.prefix}:jobs:pending"

    @property
    def jobs_ended_channel(self) -> str:
        """Pub/sub channel: the id of every job that ended, for long-polling clients (jobs/waiters.py)."""
        return f"{self.prefix}:jobs:ended"

    @property
    def jobs_progress_channel(self) -> str:
        """Pub/sub channel: the id of every job that got a partial result, for session sockets (jobs/waiters.py)."""
        return f"{self.prefix}:jobs:progress"

    # Live sessions of /ws/session (sessions/registry.py).
    def session(self, session_id: str) -> str:
        return f"{self.prefix}:session:{{{session_id}}}"

    @property
    def sessions_live(self) -> str:
        return f"{self.prefix}:sessions:live"

    def key_sessions(self, key_id: str) -> str:
        """The sessions one API key holds open, each scored by its expiry (session_slot.lua)."""
        return f"{self.prefix}:apikey:{{{key_id}}}:sessions"

    # Activity history for the live cluster page (core/stats.py).
    @property
    def stats_counters(self) -> str:
        return f"{self.prefix}:stats:counters"

    @property
    def stats_series(self) -> str:
        return f"{self.prefix}:stats:series"

    @property
    def stats_last(self) -> str:
        return f"{self.prefix}:stats:last"

    @property
    def stats_failures(self) -> str:
        return f"{self.prefix}:stats:failures"

    def stats_sample_claim(self, slot: int) -> str:
        return f"{self.prefix}:stats:sample:{slot}"

    def auth_failures(self, kind: str, address: str) -> str:
        return f"{self.prefix}:authfail:{{{kind}:{address}}}"

    @property
    def metrics_snapshot(self) -> str:
        return f"{self.prefix}:metrics:snapshot"

    def tick_claim(self, name: str, slot: int) -> str:
        return f"{self.prefix}:tick:{name}:{slot}"

    def lock(self, name: str) -> str:
        return f"{self.prefix}:lock:{name}"

    def instance(self, instance_id: str) -> str:
        return f"{self.prefix}:instance:{instance_id}"

    @property
    def instances(self) -> str:
        return f"{self.prefix}:instances"


def keys() -> Keys:
    return Keys(settings.REDIS_KEY_PREFIX)

"""The audit trail: live code appends entries to a Redis Stream; one writer bulk-inserts them into the
database and acknowledges entries only after the commit, so a crash between the two loses nothing
(unacknowledged entries are claimed again)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from importlib import import_module
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction

from core import metrics, redis_mux
from core.redis import UNAVAILABLE, get_sync_redis, keys

log = logging.getLogger(__name__)

GROUP = "audit-writers"
# Stream length cap: far above what one writer batch lags behind, so trimming only ever drops entries that
# were written long ago.
MAX_LEN = 1_000_000
# Entries a crashed writer took but never acknowledged become claimable after this long.
CLAIM_IDLE_MS = 60_000

# category -> "module.function" that applies a list of entries of that category inside the writer's transaction.
APPLIERS: dict[str, str] = {
    "node": "nodes.audit.apply_entries",
    "pools": "pools.audit.apply_entries",
    "jobs": "jobs.audit.apply_entries",
    "sessions": "sessions.audit.apply_entries",
}


async def record(category: str, **data: Any) -> None:
    """Append one audit entry of `category` (a key of APPLIERS); a Redis failure is logged and counted,
    never raised into the live path."""
    try:
        # On the multiplexed connection: node heartbeats write one now and then, and a pool checkout of
        # redis-py's costs more than the entry.
        await redis_mux.command(
            "XADD", keys().audit_stream, "MAXLEN", "~", MAX_LEN, "*", "category", category, "data", json.dumps(data, default=str)
        )
    except UNAVAILABLE:
        metrics.REDIS_ERRORS.labels(operation="audit_record").inc()
        log.warning("audit entry dropped: Redis unavailable", extra={"event": "audit_dropped", "reason": category})


def add(client: Any, category: str, **data: Any) -> Any:
    """Queue the same entry on a pipeline (or send it on a client) of the caller's, so an audit entry can ride
    in a round trip the live path makes anyway; the pipeline's caller then owns the Redis failure."""
    return client.xadd(
        keys().audit_stream, {"category": category, "data": json.dumps(data, default=str)}, maxlen=MAX_LEN, approximate=True
    )


def _ensure_group(client: Any, stream: str) -> None:
    try:
        client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except Exception as exc:  # BUSYGROUP: it exists already
        if "BUSYGROUP" not in str(exc):
            raise


def _applier(kind: str) -> Callable[[list[dict[str, Any]]], None] | None:
    path = APPLIERS.get(kind)
    if path is None:
        return None
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)


def write_batch(consumer: str | None = None, count: int | None = None) -> int:
    """Move one batch from the streams into the database; returns how many entries were committed.

    Nodes and pools write the main stream, jobs the stream of their shard (so a job's transition and its
    entry are one script): one batch takes up to `count` stream entries from each stream, in one transaction.
    """
    client = get_sync_redis()
    consumer = consumer or settings.INSTANCE_ID
    count = count or settings.AUDIT_BATCH_SIZE
    taken: dict[str, list[str]] = {}
    parsed: list[tuple[str, str, dict[str, Any]]] = []
    for stream, entries in _take(client, consumer, count).items():
        taken[stream] = [entry_id for entry_id, _ in entries]
        for entry_id, fields in entries:
            category = (fields or {}).get("category", "")
            if _applier(category) is None:
                log.warning("audit entry of unknown category skipped", extra={"event": "audit_unknown", "reason": category})
                continue
            data = json.loads(fields.get("data") or "{}")
            # A job transition writes all its entries as one list (one stream entry per transition).
            for item in data if isinstance(data, list) else [data]:
                parsed.append((entry_id, category, item))
    if not taken:
        return 0
    try:
        _apply(parsed)
        written = len(parsed)
    except (OperationalError, InterfaceError):
        # The database itself is unavailable: leave everything pending; it is claimed again later.
        metrics.AUDIT_FAILURES.inc()
        log.exception("audit batch failed: database unavailable", extra={"event": "audit_failed"})
        return 0
    except Exception:
        metrics.AUDIT_FAILURES.inc()
        log.exception("audit batch failed; retrying entry by entry", extra={"event": "audit_failed"})
        written = _apply_one_by_one(client, parsed)
    for stream, ids in taken.items():
        client.xack(stream, GROUP, *ids)
        client.xdel(stream, *ids)
    metrics.AUDIT_WRITTEN.inc(written)
    return written


def _take(client: Any, consumer: str, count: int) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """Entries of each stream that has any (up to `count` of each kind): our own unacknowledged ones first (a failed commit),
    then what a dead writer left, then new ones. One round trip for all streams; the consumer group is
    created when Redis says it is missing (first run, or Redis lost its data)."""
    streams = keys().audit_streams
    for _ in range(2):
        with client.pipeline(transaction=False) as pipe:
            for stream in streams:
                pipe.xreadgroup(GROUP, consumer, {stream: "0"}, count=count)
                pipe.xautoclaim(stream, GROUP, consumer, CLAIM_IDLE_MS, "0-0", count=count)
                pipe.xreadgroup(GROUP, consumer, {stream: ">"}, count=count)
            replies = pipe.execute(raise_on_error=False)
        missing = [e for e in replies if isinstance(e, Exception)]
        if not missing:
            break
        if not all("NOGROUP" in str(e) for e in missing):
            raise missing[0]
        for stream in streams:
            _ensure_group(client, stream)
    else:
        raise RuntimeError("audit consumer groups could not be created")
    taken: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for i, stream in enumerate(streams):
        own, claimed, new = replies[3 * i : 3 * i + 3]
        entries: dict[str, dict[str, str]] = {}
        for _, items in own or []:
            entries.update((entry_id, fields) for entry_id, fields in items if fields)
        entries.update((entry_id, fields) for entry_id, fields in claimed[1] if fields)
        for _, items in new or []:
            entries.update(items)
        if entries:
            taken[stream] = list(entries.items())
    return taken


def _apply(parsed: list[tuple[str, str, dict[str, Any]]]) -> None:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for _, kind, data in parsed:
        by_kind.setdefault(kind, []).append(data)
    with transaction.atomic():
        for kind, items in by_kind.items():
            applier = _applier(kind)
            assert applier is not None
            applier(items)


def _apply_one_by_one(client: Any, parsed: list[tuple[str, str, dict[str, Any]]]) -> int:
    """Isolate a poison entry so it cannot block the rest: it goes to a dead-letter stream for inspection."""
    written = 0
    for entry_id, kind, data in parsed:
        try:
            _apply([(entry_id, kind, data)])
            written += 1
        except Exception:
            log.exception("audit entry moved to the dead-letter stream", extra={"event": "audit_dead", "reason": kind})
            client.xadd(f"{keys().audit_stream}:dead", {"category": kind, "data": json.dumps(data)}, maxlen=10_000)
    return written


def drain(max_batches: int = 100, renew: Callable[[], bool] | None = None) -> int:
    """Write until the stream is empty (or `max_batches` batches); used by tests and the periodic task.

    `renew` (the writer's lock, core/tasks.py) is called before every batch: once it says the lock is no
    longer ours, another writer may be running, so this one stops."""
    total = 0
    for _ in range(max_batches):
        if renew is not None and not renew():
            break
        written = write_batch()
        total += written
        if written == 0:
            break
    return total

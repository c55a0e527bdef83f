"""The doctor's checks that read a Redis server: the server itself (reachable, version, latency, persistence,
eviction, memory), the clocks of this host and of the web instances against Redis TIME, and the evidence in
Redis that the pool leader and the audit writer run. Each takes the client and the key names as arguments,
so it runs against any server."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import redis

from console.findings import (
    Finding,
    call_with_timeout,
    failed,
    megabytes,
    passed,
    redis_time,
    seconds,
    stream_id_ms,
    warned,
)
from core.redis import UNAVAILABLE

MIN_REDIS_VERSION = (7, 0)
LATENCY_PINGS = 20
LATENCY_WARN_MS = 5.0
# Deadlines are computed from Redis TIME while logs and the audit trail carry host time: beyond this the two
# stories of one incident no longer line up, and timeouts look early or late by that much.
CLOCK_SKEW_LIMIT_S = 0.5
MEMORY_WARN_RATIO = 0.80
# With `noeviction` a full Redis refuses writes (OOM): registrations, heartbeats and jobs start failing.
MEMORY_FAIL_RATIO = 0.95


# --- Redis ------------------------------------------------------------------------------------------------------


def check_redis_reachable(client: redis.Redis, where: str, timeout: float) -> Finding:
    name = "redis.reachable"
    host, _, port = where.rpartition(":")
    cli = f"redis-cli -h {host} -p {port} ping" if host else f"redis-cli -s {where} ping"
    fix = (
        f"start Redis at {where} or set REDIS_URL to a running server (`make run` starts an embedded one); "
        f"test it with `{cli}`"
    )
    started = time.perf_counter()
    try:
        call_with_timeout(client.ping, timeout)
    except redis.AuthenticationError as exc:
        return failed(
            name, f"Redis at {where} refused our credentials: {exc}", "fix the password or user in REDIS_URL"
        )
    except (*UNAVAILABLE, redis.RedisError) as exc:
        return failed(name, f"Redis at {where} does not answer PING: {exc}", fix)
    return passed(name, f"Redis at {where} answered PING in {(time.perf_counter() - started) * 1000:.1f} ms")


def check_redis_version(client: redis.Redis) -> Finding:
    version = str(client.info("server").get("redis_version", "0"))
    numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if numbers < MIN_REDIS_VERSION:
        return failed(
            "redis.version",
            f"Redis {version} is older than {'.'.join(map(str, MIN_REDIS_VERSION))}: the scripts and stream "
            "commands the scheduler uses may be refused",
            "upgrade Redis to 7.0 or later",
        )
    return passed("redis.version", f"Redis {version}")


def check_redis_latency(client: redis.Redis, pings: int = LATENCY_PINGS) -> Finding:
    samples = []
    for _ in range(pings):
        started = time.perf_counter()
        client.ping()
        samples.append((time.perf_counter() - started) * 1000)
    median = statistics.median(samples)
    detail = f"median PING {median:.2f} ms over {pings} (max {max(samples):.2f} ms)"
    if median > LATENCY_WARN_MS:
        # Every heartbeat and every job step is several round trips, so this multiplies into job latency.
        return warned(
            "redis.latency",
            f"{detail}, above {LATENCY_WARN_MS:g} ms: every job step costs several round trips",
            "run Redis in the same zone/host network as the scheduler; check Redis CPU (`redis-cli --latency`, "
            "SLOWLOG GET) and the network path",
        )
    return passed("redis.latency", detail)


def check_redis_persistence(client: redis.Redis) -> Finding:
    """Informational: the scheduler recovers from an empty Redis, but what it loses should be a decision."""
    try:
        config = client.config_get("save")
        config.update(client.config_get("appendonly"))
        save, appendonly = config.get("save", ""), config.get("appendonly", "no") == "yes"
    except redis.ResponseError:
        # Managed services often disable CONFIG; INFO still says whether the AOF is on.
        appendonly = bool(int(client.info("persistence").get("aof_enabled", 0)))
        save = "unknown (CONFIG is disabled)"
    recovery = (
        "the scheduler recovers from that (nodes re-register on their next heartbeat, pools are rebuilt, epochs "
        "continue above the database's mark) but in-flight jobs and jobs waiting for a node end FAILED STATE_LOST"
    )
    if appendonly:
        return passed("redis.persistence", f"appendonly yes, save '{save}': live state survives a restart")
    if save:
        return passed(
            "redis.persistence",
            f"snapshots only (save '{save}'): a restart rolls live state back to the last snapshot; {recovery}",
        )
    # A warning, not a pass: losing in-flight jobs on a Redis restart should be a decision, not a default.
    return warned(
        "redis.persistence",
        f"persistence off (save '', appendonly no): a restart loses all live state; {recovery}",
        "if losing in-flight jobs on a Redis restart is not acceptable, turn on `appendonly yes` (the embedded "
        "Redis of `make run` is meant for trying things out and persists nothing)",
    )


def check_redis_eviction(client: redis.Redis) -> Finding:
    memory = client.info("memory")
    maxmemory = int(memory.get("maxmemory", 0))
    policy = str(memory.get("maxmemory_policy", "noeviction"))
    if maxmemory == 0:
        return passed("redis.eviction", f"maxmemory 0 (no limit): nothing is evicted (policy {policy})")
    if policy == "noeviction":
        return passed("redis.eviction", f"maxmemory {megabytes(maxmemory)}, policy noeviction")
    return failed(
        "redis.eviction",
        f"maxmemory {megabytes(maxmemory)} with policy {policy}: Redis may evict live keys (a node's meta, a "
        "reservation, the leader lease), which corrupts the scheduler's state",
        "redis-cli CONFIG SET maxmemory-policy noeviction (and set it in redis.conf, or CONFIG REWRITE, so a "
        "restart keeps it)",
    )


def check_redis_memory(client: redis.Redis) -> Finding:
    memory = client.info("memory")
    used, maxmemory = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
    if maxmemory == 0:
        return passed(
            "redis.memory", f"{megabytes(used)} used, no maxmemory limit (the host's memory is the limit)"
        )
    ratio = used / maxmemory
    detail = f"{megabytes(used)} used of {megabytes(maxmemory)} ({ratio:.0%})"
    fix = "raise maxmemory (redis-cli CONFIG SET maxmemory <bytes>) or find what grew (`redis-cli --bigkeys`)"
    if ratio >= MEMORY_FAIL_RATIO:
        return failed(
            "redis.memory", f"{detail}: at the limit Redis refuses writes and the scheduler stops", fix
        )
    if ratio >= MEMORY_WARN_RATIO:
        return warned("redis.memory", f"{detail}: close to the limit, where Redis refuses writes", fix)
    return passed("redis.memory", detail)


# --- clocks -------------------------------------------------------------------------------------------------------


def check_host_clock(client: redis.Redis) -> Finding:
    before = time.time()
    server = redis_time(client)
    after = time.time()
    # Compare with the middle of the round trip; half of it is the measurement's uncertainty.
    skew = server - (before + after) / 2
    detail = (
        f"this host's clock is {abs(skew) * 1000:.0f} ms {'behind' if skew > 0 else 'ahead of'} Redis TIME"
    )
    if abs(skew) > CLOCK_SKEW_LIMIT_S:
        return failed(
            "clock.host",
            f"{detail} (limit {CLOCK_SKEW_LIMIT_S * 1000:.0f} ms): deadlines use Redis TIME but logs and the audit "
            "trail use host time, so they disagree about when things happened",
            "run NTP on this host and on the Redis host (chrony or systemd-timesyncd; `chronyc tracking` shows the offset)",
        )
    return passed("clock.host", detail)


def check_instances(
    client: redis.Redis, index_key: str, instance_key: Callable[[str], str], interval_s: float
) -> Finding:
    """Web instances advertise `seen_at` (their host time) every `interval_s`; their hash expires when they stop."""
    name = "clock.instances"
    now = redis_time(client)
    index = client.zrange(index_key, 0, -1, withscores=True)
    if not index:
        return warned(
            name,
            "no web instance has advertised itself: none is running, or they use another Redis or key prefix",
            "start the web tier (`python -m supervisor.serve`; `make run` starts one); check its REDIS_URL and REDIS_KEY_PREFIX",
        )
    with client.pipeline(transaction=False) as pipe:
        for instance_id, _ in index:
            pipe.hgetall(instance_key(instance_id))
        hashes = pipe.execute()
    live, ahead, late, stopped = [], [], [], []
    for (instance_id, score), fields in zip(index, hashes, strict=True):
        if not fields:
            stopped.append(f"{instance_id} (last seen {seconds(now - score)} ago)")
            continue
        seen = float(fields.get("seen_at") or score)
        # seen_at is truncated to whole seconds, so it can lag by up to 1 s but never lead: a lead beyond the
        # limit is that instance's clock running ahead of Redis.
        if seen - now > CLOCK_SKEW_LIMIT_S:
            ahead.append(f"{instance_id} ({seen - now:.1f} s ahead)")
        elif now - seen > interval_s + 1 + CLOCK_SKEW_LIMIT_S:
            late.append(
                f"{instance_id} (last advertised {seconds(now - seen)} ago, expected every {interval_s:g} s)"
            )
        else:
            live.append(instance_id)
    summary = f"{len(live)} advertising"
    if ahead:
        return failed(
            name,
            f"{summary}; clock ahead of Redis TIME by more than {CLOCK_SKEW_LIMIT_S:g} s: {', '.join(ahead)}",
            "run NTP on those hosts (chrony or systemd-timesyncd)",
        )
    problems = []
    if late:
        problems.append(f"late (stalled, stopping, or its clock is behind Redis): {', '.join(late)}")
    if stopped:
        problems.append(f"stopped advertising: {', '.join(stopped)}")
    if problems or not live:
        return warned(
            name,
            f"{summary}; " + "; ".join(problems or ["none is advertising now"]),
            "instances shut down on purpose need nothing (they are forgotten after a day); otherwise check that "
            "process and its log, and its host's clock",
        )
    return passed(name, f"{summary}, clocks within {CLOCK_SKEW_LIMIT_S:g} s of Redis TIME: {', '.join(live)}")


# --- the pool leader and the audit writer -------------------------------------------------------------------


def check_pool_leader(client: redis.Redis, lease_key: str) -> Finding:
    holder = client.get(lease_key)
    if not holder:
        return warned(
            "pools.leader",
            "no process holds the pool leader lease: pools are created as nodes register but never rebuilt",
            "run a Celery worker with POOL_LEADER_ENABLED=true (the default), or `manage.py rebuild_pools --acquire` once",
        )
    who, _, epoch = str(holder).rpartition("|")
    return passed("pools.leader", f"lease held by {who or holder}, epoch {epoch}")


def oldest_stream(client: redis.Redis, streams: list[str]) -> str:
    """Of the audit streams (main and per job shard), the one whose first entry is oldest: the writer's
    health is judged by the entry that waited longest."""
    with client.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.xrange(stream, "-", "+", count=1)
        firsts = pipe.execute()
    waiting = [(stream_id_ms(first[0][0]), stream) for stream, first in zip(streams, firsts, strict=True) if first]
    return min(waiting)[1] if waiting else streams[0]


def check_audit_writer(
    client: redis.Redis, stream: str, group: str, lag_s: float, claim_idle_s: float
) -> Finding:
    """Beat has no ping; the evidence that beat and a worker both run is that the audit stream drains.

    The writer deletes what it wrote, so every entry still in the stream is unwritten: undelivered entries
    (after the group's last-delivered-id) wait for the next run of the periodic task; pending ones were taken
    by a writer that has not committed yet, and are claimed by another after `claim_idle_s`.
    """
    name = "audit.writer"
    not_running = (
        "beat or worker not running: the audit writer is not draining the stream, so the database (admin history, "
        "job rows) falls behind"
    )
    start_fix = (
        "start Celery beat and a worker: `celery -A scheduler beat -l INFO` and `celery -A scheduler worker -l INFO` "
        "(`make run` starts both); their logs say why if they are running"
    )
    now_ms = redis_time(client) * 1000
    oldest = client.xrange(stream, "-", "+", count=1)
    if not oldest:
        return passed(name, "the audit stream is drained (no entry waiting)")
    oldest_age = (now_ms - stream_id_ms(oldest[0][0])) / 1000
    waiting = client.xlen(stream)
    groups = {entry["name"]: entry for entry in client.xinfo_groups(stream)}
    if group not in groups:
        if oldest_age > lag_s:
            return failed(
                name,
                f"{not_running} (no writer ever ran: {waiting} entries, oldest {seconds(oldest_age)} old)",
                start_fix,
            )
        return passed(
            name, f"{waiting} entries waiting for the first writer run, oldest {seconds(oldest_age)} old"
        )
    info = groups[group]
    pending = int(info.get("pending") or 0)
    last = str(info.get("last-delivered-id") or "0-0")
    ms, _, seq = last.partition("-")
    # Exclusive start without the `(` syntax, so this also reads older servers correctly.
    undelivered = client.xrange(stream, f"{ms}-{int(seq or 0) + 1}", "+", count=1)
    if undelivered:
        age = (now_ms - stream_id_ms(undelivered[0][0])) / 1000
        if age > lag_s:
            return failed(
                name,
                f"{not_running} ({waiting - pending} entries undelivered, oldest {seconds(age)} old, limit {lag_s:g} s)",
                start_fix,
            )
    if pending and oldest_age > claim_idle_s + lag_s:
        return failed(
            name,
            f"{pending} entries taken by a writer {seconds(oldest_age)} ago are still not written: the writer died and "
            "none reclaimed them, or the database refuses them",
            "check the database finding above and the worker log (`audit batch failed`)",
        )
    return passed(
        name,
        f"draining: {waiting} entries waiting ({pending} being written), oldest {seconds(oldest_age)} old",
    )

"""Deployment checks for `manage.py doctor`: each one a small function that returns a `Finding` saying what
is wrong and how to fix it.

The Redis checks take the client and the key names as arguments, so they run against any server; the
database, channel layer and Celery checks import Django, channels and Celery inside the function, so this
module stays cheap to import. `diagnose()` wires them to the settings and skips the checks whose dependency
is down instead of letting them fail with a second, less helpful error.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import redis

from core.redis import UNAVAILABLE

Status = Literal["OK", "WARN", "FAIL", "SKIPPED"]

MIN_REDIS_VERSION = (7, 0)
LATENCY_PINGS = 20
LATENCY_WARN_MS = 5.0
# Deadlines are computed from Redis TIME while logs and the audit trail carry host time: beyond this the two
# stories of one incident no longer line up, and timeouts look early or late by that much.
CLOCK_SKEW_LIMIT_S = 0.5
MEMORY_WARN_RATIO = 0.80
# With `noeviction` a full Redis refuses writes (OOM): registrations, heartbeats and jobs start failing.
MEMORY_FAIL_RATIO = 0.95
AUDIT_LAG_S = 30.0


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    # Not ok, but the deployment works: reported with its fix, does not make the run fail.
    warning: bool = False
    # Not run because something it needs is down (already reported as a failure of its own).
    skipped: bool = False

    @property
    def status(self) -> Status:
        if self.skipped:
            return "SKIPPED"
        if self.ok:
            return "OK"
        return "WARN" if self.warning else "FAIL"

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "ok": self.ok,
            "detail": self.detail,
            "fix": self.fix,
        }


def passed(name: str, detail: str) -> Finding:
    return Finding(name, True, detail)


def warned(name: str, detail: str, fix: str) -> Finding:
    return Finding(name, False, detail, fix, warning=True)


def failed(name: str, detail: str, fix: str) -> Finding:
    return Finding(name, False, detail, fix)


def skipped(name: str, detail: str) -> Finding:
    return Finding(name, False, detail, skipped=True)


# --- small helpers --------------------------------------------------------------------------------------------


def address(url: str) -> str:
    """Host and port (or socket path) of a Redis URL: never the password a URL may carry."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"


def same_server(url_a: str, url_b: str) -> bool:
    return address(url_a) == address(url_b)


def redis_time(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


def stream_id_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def megabytes(value: int) -> str:
    return f"{value / 1_048_576:.1f} MB"


def seconds(value: float) -> str:
    return f"{value:.1f} s" if abs(value) < 120 else f"{value / 60:.0f} min"


def call_with_timeout(fn: Callable[[], Any], timeout: float) -> Any:
    """Run `fn` in a daemon thread and wait at most `timeout`: a hung server (SIGSTOPped, a black-holed
    route) must not hold the doctor for the client's own, possibly much longer, socket timeout. A daemon
    thread, because a thread still blocked in a socket read must not keep the process from exiting."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="doctor-check", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


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


# --- database ---------------------------------------------------------------------------------------------------


def check_database() -> Finding:
    from django.db import DatabaseError, connection

    params = connection.settings_dict
    where = f"{connection.vendor} {params.get('HOST') or ''}{'/' if params.get('HOST') else ''}{params.get('NAME')}"
    started = time.perf_counter()
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return failed(
            "database",
            f"{where} is unreachable: {exc}; the audit writer leaves entries in Redis until it is back",
            "check DATABASE_URL and that the database server is running and accepts this host",
        )
    return passed("database", f"{where} answered in {(time.perf_counter() - started) * 1000:.1f} ms")


def check_migrations() -> Finding:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = [f"{migration.app_label}.{migration.name}" for migration, _ in plan]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return failed(
            "database.migrations",
            f"{len(names)} migration(s) not applied: {shown}",
            "python manage.py migrate",
        )
    return passed("database.migrations", "all migrations applied")


# --- channel layer ------------------------------------------------------------------------------------------------


def check_channel_layer(timeout: float) -> Finding:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    name = "channel_layer"
    layer = get_channel_layer()
    if layer is None:
        return failed(
            name,
            "CHANNEL_LAYERS is not configured: frames to nodes on other instances are lost",
            "set CHANNEL_LAYERS",
        )

    async def round_trip() -> float:
        try:
            channel = await layer.new_channel()
            token = secrets.token_hex(8)
            started = time.perf_counter()
            await asyncio.wait_for(layer.send(channel, {"type": "doctor.ping", "token": token}), timeout)
            # This layer's receive retries forever while Redis is down (node sockets must outlive outages),
            # so only a timeout ends the wait.
            message = await asyncio.wait_for(layer.receive(channel), timeout)
            if message.get("token") != token:
                raise RuntimeError(f"received another message than the one sent: {message!r}")
            return (time.perf_counter() - started) * 1000
        finally:
            # Pools are per event loop and async_to_sync's loop ends with this call: close them here.
            close = getattr(layer, "close_pools", None)
            if close is not None:
                await close()

    try:
        elapsed = async_to_sync(round_trip)()
    except TimeoutError:
        return failed(
            name,
            f"a message sent to a new channel did not come back within {timeout:g} s: instances cannot pass frames "
            "to nodes connected elsewhere",
            "check CHANNEL_LAYERS hosts (the same Redis as REDIS_URL by default) and that Redis answers",
        )
    except (*UNAVAILABLE, redis.RedisError, RuntimeError) as exc:
        return failed(
            name, f"send/receive failed: {exc}", "check CHANNEL_LAYERS hosts and that Redis answers"
        )
    return passed(name, f"send and receive on a new channel in {elapsed:.1f} ms")


# --- Celery ---------------------------------------------------------------------------------------------------------


def check_celery_workers(timeout: float) -> Finding:
    from scheduler.celery import app

    name = "celery.worker"
    start_fix = (
        "start a worker: `celery -A scheduler worker -l INFO` (`make run` starts one) with the same "
        "CELERY_BROKER_URL as this process"
    )
    try:
        with app.connection_for_write() as connection:
            # Bounded: kombu's default is to retry a dead broker for a long time.
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
            replies = app.control.ping(timeout=timeout, connection=connection)
    except Exception as exc:  # kombu wraps transport errors in its own classes
        return failed(
            name,
            f"the Celery broker at {address(app.conf.broker_url or '')} is unreachable: {exc}",
            "check CELERY_BROKER_URL and that its server runs",
        )
    workers = sorted(hostname for reply in replies or [] for hostname in reply)
    if not workers:
        return failed(
            name,
            f"no Celery worker answered a ping within {timeout:g} s: the audit writer, the deadline sweeps and the "
            "pool leader are not running",
            start_fix,
        )
    return passed(name, f"{len(workers)} worker(s) answered: {', '.join(workers)}")


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


# --- Django settings ------------------------------------------------------------------------------------------------


def check_settings() -> Finding:
    from django.core import checks

    messages = [m for m in checks.run_checks() if not m.is_silenced()]
    errors = [m for m in messages if m.level >= checks.ERROR]
    warnings = [m for m in messages if checks.WARNING <= m.level < checks.ERROR]

    def describe(items: list[checks.CheckMessage]) -> str:
        return "; ".join(f"{m.id}: {m.msg}" for m in items)

    def hints(items: list[checks.CheckMessage]) -> str:
        return "; ".join(m.hint for m in items if m.hint) or "see `python manage.py check`"

    if errors:
        return failed("settings", describe(errors), hints(errors))
    if warnings:
        return warned("settings", describe(warnings), hints(warnings))
    return passed("settings", "system checks pass")


# --- all of them ----------------------------------------------------------------------------------------------------


def run_check(name: str, check: Callable[[], Finding]) -> Finding:
    """One check; an error it did not expect becomes its FAIL line instead of a traceback."""
    try:
        return check()
    except UNAVAILABLE as exc:
        return failed(
            name, f"Redis stopped answering during the check: {exc}", "see redis.reachable; run doctor again"
        )
    except Exception as exc:
        return failed(
            name,
            f"the check could not run: {type(exc).__name__}: {exc}",
            "run `python manage.py check` and the command named in this check by hand",
        )


def diagnose(timeout: float = 2.0, audit_lag_s: float = AUDIT_LAG_S) -> list[Finding]:
    from django.conf import settings

    from core import audit
    from core.redis import get_sync_redis, keys, redis_url
    from scheduler.celery import app

    k = keys()
    client = get_sync_redis()
    url = redis_url()
    findings = [run_check("settings", check_settings)]

    reachable = run_check("redis.reachable", lambda: check_redis_reachable(client, address(url), timeout))
    findings.append(reachable)

    def with_redis(name: str, check: Callable[[], Finding], uses_redis: bool = True) -> Finding:
        if uses_redis and not reachable.ok:
            return skipped(name, f"needs Redis at {address(url)}, which does not answer")
        return run_check(name, check)

    findings += [
        with_redis("redis.version", lambda: check_redis_version(client)),
        with_redis("redis.latency", lambda: check_redis_latency(client)),
        with_redis("redis.persistence", lambda: check_redis_persistence(client)),
        with_redis("redis.eviction", lambda: check_redis_eviction(client)),
        with_redis("redis.memory", lambda: check_redis_memory(client)),
        with_redis("clock.host", lambda: check_host_clock(client)),
        with_redis(
            "clock.instances",
            lambda: check_instances(client, k.instances, k.instance, settings.NODE_SWEEP_INTERVAL_S),
        ),
    ]

    database = run_check("database", check_database)
    findings.append(database)
    if database.ok:
        findings.append(run_check("database.migrations", check_migrations))
    else:
        findings.append(skipped("database.migrations", "needs the database, which does not answer"))

    # The channel layer and the broker are this Redis by default; when they are, their checks would only
    # repeat its failure (and the channel layer's receive would wait out the whole timeout).
    hosts = settings.CHANNEL_LAYERS.get("default", {}).get("CONFIG", {}).get("hosts", [])
    layer_on_redis = not hosts or any(not isinstance(h, str) or same_server(h, url) for h in hosts)
    findings.append(with_redis("channel_layer", lambda: check_channel_layer(timeout), layer_on_redis))
    broker_on_redis = same_server(str(app.conf.broker_url or url), url)
    findings.append(with_redis("celery.worker", lambda: check_celery_workers(timeout), broker_on_redis))
    findings.append(with_redis("pools.leader", lambda: check_pool_leader(client, k.pool_lease)))
    findings.append(
        with_redis(
            "audit.writer",
            lambda: check_audit_writer(
                client, oldest_stream(client, k.audit_streams), audit.GROUP, audit_lag_s, audit.CLAIM_IDLE_MS / 1000
            ),
        )
    )
    return findings

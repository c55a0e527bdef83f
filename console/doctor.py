"""Deployment checks for `manage.py doctor`: each one a small function that returns a `Finding` saying what
is wrong and how to fix it.

The Redis checks (`console/redis_checks.py`) take the client and the key names as arguments, so they run
against any server; the database, channel layer and Celery checks here import Django, channels and Celery
inside the function, so this module stays cheap to import. `Finding` and the shared helpers are in
`console/findings.py`. `diagnose()` wires them to the settings and skips the checks whose dependency
is down instead of letting them fail with a second, less helpful error.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable

import redis

from console.findings import Finding, address, failed, passed, same_server, skipped, warned
from console.redis_checks import (
    check_audit_writer,
    check_host_clock,
    check_instances,
    check_pool_leader,
    check_redis_eviction,
    check_redis_latency,
    check_redis_memory,
    check_redis_persistence,
    check_redis_reachable,
    check_redis_version,
    oldest_stream,
)
from core.redis import UNAVAILABLE

AUDIT_LAG_S = 30.0


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

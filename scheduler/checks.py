"""Startup checks: misconfiguration fails at start and says what to set."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def check_secret_key(app_configs: Any, **kwargs: Any) -> list[Error]:
    if settings.SECRET_KEY_CONFIGURED or settings.DEBUG:
        return []
    return [
        Error(
            "SECRET_KEY is not set; a random one is used, so admin sessions end at every restart.",
            hint="Set SECRET_KEY (or SECRET_KEY_FILE) to a long random string.",
            id="scheduler.E001",
        )
    ]


# A deployment check (`manage.py check --deploy`, and doctor): on every other command it printed a warning
# even where the command had its own Redis (`make test`), and commands now say which Redis they use anyway.
@register(deploy=True)
def check_redis_configured(app_configs: Any, **kwargs: Any) -> list[Warning]:
    if settings.REDIS_URL:
        return []
    return [
        Warning(
            "REDIS_URL is not set; redis://127.0.0.1:6379/0 is assumed.",
            hint="Use `make run`, which starts an embedded Redis, or set REDIS_URL.",
            id="scheduler.W002",
        )
    ]


@register()
def check_node_timeouts(app_configs: Any, **kwargs: Any) -> list[Error]:
    errors = []
    if settings.NODE_HEARTBEAT_TIMEOUT_S <= settings.NODE_HEARTBEAT_INTERVAL_S:
        errors.append(
            Error(
                "NODE_HEARTBEAT_TIMEOUT_S must be longer than NODE_HEARTBEAT_INTERVAL_S, "
                "or every node flaps offline between heartbeats.",
                hint="Keep the default ratio: timeout = 3 x interval.",
                id="scheduler.E003",
            )
        )
    if settings.NODE_HEALTH_WINDOW_FAILURES > settings.NODE_HEALTH_WINDOW:
        errors.append(
            Error(
                "NODE_HEALTH_WINDOW_FAILURES cannot exceed NODE_HEALTH_WINDOW.",
                id="scheduler.E004",
            )
        )
    return errors


@register()
def check_node_auth(app_configs: Any, **kwargs: Any) -> list[Warning]:
    if settings.NODE_AUTH_REQUIRED:
        return []
    return [
        Warning(
            "NODE_AUTH_REQUIRED is off: any client that reaches /ws/node can register as a node.",
            hint="Only do this on a trusted network.",
            id="scheduler.W005",
        )
    ]


@register()
def check_pool_lease_timings(app_configs: Any, **kwargs: Any) -> list[Error]:
    # Fencing relies on this order: a leader renews several times before it gives up on itself, and gives
    # up on itself before the lease can expire and go to another process.
    renew, give_up, ttl = settings.POOL_LEASE_RENEW_S, settings.POOL_LEADER_GIVE_UP_S, settings.POOL_LEASE_TTL_S
    if renew < give_up < ttl:
        return []
    return [
        Error(
            f"Pool lease timings must satisfy POOL_LEASE_RENEW_S ({renew}) < POOL_LEADER_GIVE_UP_S ({give_up}) "
            f"< POOL_LEASE_TTL_S ({ttl}).",
            hint="The defaults are 2 < 10 < 15.",
            id="scheduler.E006",
        )
    ]


@register()
def check_node_idle_timeout(app_configs: Any, **kwargs: Any) -> list[Error]:
    # A socket silent for the idle timeout is closed; a live node is silent for up to one heartbeat interval.
    idle, interval = settings.NODE_IDLE_TIMEOUT_S, settings.NODE_HEARTBEAT_INTERVAL_S
    if idle == 0 or idle > 2 * interval:
        return []
    return [
        Error(
            f"NODE_IDLE_TIMEOUT_S ({idle}) must exceed twice NODE_HEARTBEAT_INTERVAL_S ({interval}), or the "
            "sockets of live nodes are closed between heartbeats.",
            hint="The default is 120 s for 15 s heartbeats; 0 turns the idle timeout off.",
            id="scheduler.E007",
        )
    ]

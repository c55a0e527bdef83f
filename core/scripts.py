"""The one way to run Lua: every script is a `.lua` file in `core/lua/`, called by name.

`register_script` objects retry with the full source when Redis answers NOSCRIPT, so scripts survive
`SCRIPT FLUSH`, restarts and failovers without any loading step.
"""

from __future__ import annotations

import time
from functools import cache
from pathlib import Path
from typing import Any

import redis
from redis.commands.core import AsyncScript, Script

from core import metrics
from core.redis import UNAVAILABLE, get_redis, get_sync_redis

LUA_DIR = Path(__file__).resolve().parent / "lua"

ScriptArg = str | int | float


@cache
def source(name: str) -> str:
    return (LUA_DIR / f"{name}.lua").read_text()


def names() -> list[str]:
    return sorted(path.stem for path in LUA_DIR.glob("*.lua"))


_async_scripts: dict[str, AsyncScript] = {}
_sync_scripts: dict[str, Script] = {}


async def run(name: str, keys: list[str], args: list[ScriptArg]) -> Any:
    """Run script `name` on the loop's client; Redis errors are counted and re-raised."""
    client = get_redis()
    script = _async_scripts.get(name)
    if script is None:
        script = _async_scripts[name] = client.register_script(source(name))
    started = time.perf_counter()
    try:
        return await script(keys=keys, args=args, client=client)
    except UNAVAILABLE:
        metrics.REDIS_ERRORS.labels(operation=name).inc()
        raise
    except redis.ResponseError:
        metrics.REDIS_ERRORS.labels(operation=name).inc()
        raise
    finally:
        metrics.REDIS_LATENCY.labels(operation=name).observe(time.perf_counter() - started)


def run_blocking(name: str, keys: list[str], args: list[ScriptArg]) -> Any:
    """The same for sync callers (Celery tasks, management commands)."""
    client = get_sync_redis()
    script = _sync_scripts.get(name)
    if script is None:
        script = _sync_scripts[name] = client.register_script(source(name))
    try:
        return script(keys=keys, args=args, client=client)
    except (*UNAVAILABLE, redis.ResponseError):
        metrics.REDIS_ERRORS.labels(operation=name).inc()
        raise

"""The one way to run Lua: every script is a `.lua` file in `core/lua/`, called by name.

`register_script` objects retry with the full source when Redis answers NOSCRIPT, so scripts survive
`SCRIPT FLUSH`, restarts and failovers without any loading step.

A line `--#include <name>` is replaced by `lua/lib/<name>.lua`: Redis has no modules for scripts, and the job
transitions share how they build a job's audit entry.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import redis
from redis.commands.core import AsyncScript, Script

from core import metrics, redis_mux
from core.redis import UNAVAILABLE, get_redis, get_sync_redis, redis_url

LUA_DIR = Path(__file__).resolve().parent / "lua"

ScriptArg = str | int | float


@cache
def source(name: str) -> str:
    lines = (LUA_DIR / f"{name}.lua").read_text().splitlines(keepends=True)
    return "".join(
        (LUA_DIR / "lib" / f"{line.split()[1]}.lua").read_text() if line.startswith("--#include ") else line
        for line in lines
    )


@cache
def sha(name: str) -> str:
    return hashlib.sha1(source(name).encode()).hexdigest()


def names() -> list[str]:
    return sorted(path.stem for path in LUA_DIR.glob("*.lua"))


_async_scripts: dict[str, AsyncScript] = {}
_sync_scripts: dict[str, Script] = {}


def _observe(operation: str, seconds: float) -> None:
    child = _latency.get(operation)
    if child is None:
        child = _latency[operation] = metrics.REDIS_LATENCY.labels(operation=operation)
    child.observe(seconds)


_latency: dict[str, Any] = {}


async def run(name: str, keys: list[str], args: list[ScriptArg]) -> Any:
    """Run script `name` on the loop's multiplexed connection (`core/redis_mux.py`); Redis errors are counted
    and re-raised. A script Redis does not have (restart, SCRIPT FLUSH) is sent whole with EVAL, which also
    loads it."""
    started = time.perf_counter()
    try:
        if not redis_mux.supported(redis_url()):
            return await _run_redis_py(name, keys, args)
        client = redis_mux.get_mux()
        try:
            return await client.execute("EVALSHA", sha(name), len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return await client.execute("EVAL", source(name), len(keys), *keys, *args)
    except (*UNAVAILABLE, redis.ResponseError):
        metrics.REDIS_ERRORS.labels(operation=name).inc()
        raise
    finally:
        _observe(name, time.perf_counter() - started)


async def _run_redis_py(name: str, keys: list[str], args: list[ScriptArg]) -> Any:
    client = get_redis()
    script = _async_scripts.get(name)
    if script is None:
        script = _async_scripts[name] = client.register_script(source(name))
    return await script(keys=keys, args=args, client=client)


class Pipe:
    """The commands a `run_pipeline` builder queues, by the names of redis-py's pipeline methods, so a builder
    serves both clients; only the commands the job path sends are here."""

    __slots__ = ("commands",)

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []

    def evalsha(self, digest: str, numkeys: int, *keys_and_args: Any) -> None:
        self.commands.append(("EVALSHA", digest, numkeys, *keys_and_args))

    def get(self, key: str) -> None:
        self.commands.append(("GET", key))

    def set(self, key: str, value: Any) -> None:
        self.commands.append(("SET", key, value))

    def hget(self, key: str, field: str) -> None:
        self.commands.append(("HGET", key, field))

    def zcard(self, key: str) -> None:
        self.commands.append(("ZCARD", key))

    def zrem(self, key: str, *members: Any) -> None:
        self.commands.append(("ZREM", key, *members))

    def srandmember(self, key: str, number: int | None = None) -> None:
        self.commands.append(("SRANDMEMBER", key) if number is None else ("SRANDMEMBER", key, number))


def queue(pipe: Any, name: str, keys: list[str], args: list[ScriptArg]) -> None:
    """Queue script `name` on a pipeline built inside `run_pipeline`, as a bare EVALSHA: redis-py's own
    pipeline scripts would cost a SCRIPT EXISTS round trip on every execute."""
    pipe.evalsha(sha(name), len(keys), *keys, *args)


async def run_pipeline(operation: str, build: Callable[[Any], None]) -> list[Any]:
    """Send the commands `build(pipe)` queues (scripts through `queue`, other slots' commands beside them) in
    one round trip and return their replies. A script Redis does not have (restart, SCRIPT FLUSH) did not
    run: it is loaded and the whole pipeline built and sent again, so the commands beside a script must be
    safe to repeat (reads, idempotent writes). Redis errors are counted and re-raised."""
    started = time.perf_counter()
    try:
        lean = redis_mux.supported(redis_url())
        for _ in range(2):
            if lean:
                pipe = Pipe()
                build(pipe)
                replies = await redis_mux.get_mux().pipeline(pipe.commands)
            else:
                async with get_redis().pipeline(transaction=False) as redis_pipe:
                    build(redis_pipe)
                    replies = await redis_pipe.execute(raise_on_error=False)
            missing = [reply for reply in replies if isinstance(reply, redis.exceptions.NoScriptError)]
            if not missing:
                break
            client = get_redis()
            every = names()
            for name, present in zip(every, await client.script_exists(*map(sha, every)), strict=True):
                if not present:
                    await client.script_load(source(name))
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies
    except (*UNAVAILABLE, redis.ResponseError):
        metrics.REDIS_ERRORS.labels(operation=operation).inc()
        raise
    finally:
        _observe(operation, time.perf_counter() - started)


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

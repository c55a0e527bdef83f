"""The job path's Redis client: one multiplexed connection per event loop, commands pipelined automatically.

redis-py's asyncio client takes a connection from a pool, packs, writes, reads and parses every command
through several layers of Python per call: on the job path that was about 44 % of the web process's CPU
(`docs/performance.md`). This client does only what the hot path needs, the way multiplexed clients of other
languages do: every command of every task goes out on one socket, in order; the commands issued in one turn
of the event loop are written with one `write` (so concurrent jobs share syscalls), and the replies, parsed
by hiredis as they arrive, complete the callers' futures in order. No pool, no per-call connection checks.

It speaks plain RESP2 for the non-blocking commands and scripts of the job path (`core/scripts.py`). Blocking
commands, pub/sub and transactions stay on redis-py (`core/redis.get_redis`), and so does everything when the
URL asks for TLS.

Failures read exactly as redis-py's: a refused or lost connection raises `redis.ConnectionError`, a reply
that does not come within `REDIS_SOCKET_TIMEOUT` raises `redis.TimeoutError` (and drops the connection, as
redis-py does: a late reply could otherwise answer the wrong caller), an error reply is the exception
redis-py's parser makes of it (`NoScriptError`, `ResponseError`...). Like redis-py's client with the
project's retry, a command that failed for want of a connection is sent again on a fresh one, twice at most,
50 and 100 ms apart.
"""

from __future__ import annotations

import asyncio
import collections
import weakref
from collections.abc import Sequence
from typing import Any

import hiredis
import redis
from django.conf import settings
from redis._parsers.base import BaseParser
from redis.asyncio.connection import parse_url

from core.redis import redis_url

RETRY_DELAYS_S = (0.05, 0.1)

Command = Sequence[Any]


class _Protocol(asyncio.Protocol):
    """One connection: replies are matched to waiting futures in the order the commands were written."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.reader = hiredis.Reader(encoding="utf-8", replyError=BaseParser.parse_error)
        # Each entry: [future, replies expected, replies so far (a list for a pipeline, None for one command),
        # time written].
        self.pending: collections.deque[list[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.outgoing: list[bytes] = []
        self.flush_scheduled = False
        self.lost: BaseException | None = None
        self.watchdog: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        pending = self.pending
        while (reply := reader.gets()) is not False:
            if not pending:
                # A reply nobody asked for: the stream is out of step, and nothing read from it can be trusted.
                self._fail(redis.ConnectionError("Redis sent a reply no command was waiting for"))
                return
            entry = pending[0]
            replies = entry[2]
            if replies is None:
                pending.popleft()
                future = entry[0]
                if not future.done():
                    future.set_result(reply)
            else:
                replies.append(reply)
                if len(replies) == entry[1]:
                    pending.popleft()
                    future = entry[0]
                    if not future.done():
                        future.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(redis.ConnectionError(f"Connection to Redis lost{f': {exc}' if exc else ''}"))

    # --- sending ---------------------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self.lost is None and self.transport is not None and not self.transport.is_closing()

    def send(self, packed: bytes, count: int | None) -> asyncio.Future[Any]:
        future = self.loop.create_future()
        now = self.loop.time()
        self.pending.append([future, count, None if count is None else [], now])
        self.outgoing.append(packed)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)
        if self.watchdog is None:
            self.watchdog = self.loop.call_at(now + self.timeout, self._check_timeout)
        return future

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.outgoing and self.usable:
            data = b"".join(self.outgoing) if len(self.outgoing) > 1 else self.outgoing[0]
            self.outgoing.clear()
            self.transport.write(data)  # type: ignore[union-attr]

    def _check_timeout(self) -> None:
        self.watchdog = None
        if not self.pending or self.lost is not None:
            return
        oldest = self.pending[0][3]
        if self.loop.time() - oldest >= self.timeout:
            self._fail(redis.TimeoutError("Timeout reading from Redis"))
        else:
            self.watchdog = self.loop.call_at(oldest + self.timeout, self._check_timeout)

    def _fail(self, error: BaseException) -> None:
        if self.lost is None:
            self.lost = error
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        self.outgoing.clear()
        while self.pending:
            future = self.pending.popleft()[0]
            if not future.done():
                future.set_exception(error)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def close(self) -> None:
        if self.loop.is_closed():
            # Nothing can run on a closed loop: its transport and futures went with it.
            self.pending.clear()
            return
        self._fail(redis.ConnectionError("Connection closed by the client"))


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a connection attempt's error as seen, so one that nobody awaited any more is not logged."""
    if not future.cancelled():
        future.exception()


class MuxClient:
    """Commands on one multiplexed connection of the running loop (see the module's docstring)."""

    def __init__(self, url: str, timeout: float) -> None:
        self.options = parse_url(url)
        self.timeout = timeout
        self.protocol: _Protocol | None = None
        self.connecting: asyncio.Future[_Protocol] | None = None

    async def execute(self, *args: Any) -> Any:
        """One command's reply (an error reply raised)."""
        reply = await self._send(hiredis.pack_command(args), None)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        """The replies of `commands`, sent together, in order; an error reply is returned in its place, not
        raised (redis-py's `execute(raise_on_error=False)`)."""
        if not commands:
            return []
        packed = b"".join(hiredis.pack_command(tuple(command)) for command in commands)
        return await self._send(packed, len(commands))

    async def hgetall(self, key: str) -> dict[str, str]:
        flat = await self.execute("HGETALL", key)
        return dict(zip(flat[::2], flat[1::2], strict=True))

    async def _send(self, packed: bytes, count: int | None) -> Any:
        for delay in (*RETRY_DELAYS_S, None):
            protocol = self.protocol
            if protocol is None or not protocol.usable:
                try:
                    protocol = await self._connect()
                except redis.ConnectionError:
                    if delay is None:
                        raise
                    await asyncio.sleep(delay)
                    continue
            try:
                return await protocol.send(packed, count)
            except (redis.ConnectionError, redis.TimeoutError):
                if delay is None:
                    raise
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connect(self) -> _Protocol:
        # Callers that find no connection at the same moment share one attempt. An attempt that finished
        # while nobody waited on it (its callers were cancelled) is not reused: its connection may have died
        # since, or its error be old.
        if self.connecting is not None and self.connecting.done():
            self.connecting = None
        if self.connecting is None:
            self.connecting = asyncio.ensure_future(self._open())
            self.connecting.add_done_callback(_retrieve)
        connecting = self.connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self.connecting is connecting:
                self.connecting = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        options = self.options

        def factory() -> _Protocol:
            return _Protocol(loop, self.timeout)

        try:
            async with asyncio.timeout(self.timeout):
                if "path" in options:
                    _, protocol = await loop.create_unix_connection(factory, options["path"])
                else:
                    _, protocol = await loop.create_connection(
                        factory, options.get("host", "127.0.0.1"), options.get("port", 6379)
                    )
                setup: list[tuple[Any, ...]] = []
                if options.get("password"):
                    setup.append(("AUTH", *filter(None, (options.get("username"), options["password"]))))
                if options.get("db"):
                    setup.append(("SELECT", options["db"]))
                if setup:
                    replies = await protocol.send(b"".join(hiredis.pack_command(c) for c in setup), len(setup))
                    for reply in replies:
                        if isinstance(reply, Exception):
                            protocol.close()
                            raise redis.ConnectionError(f"Redis refused the connection's setup: {reply}")
        except (OSError, TimeoutError) as error:
            raise redis.ConnectionError(f"Error connecting to Redis: {error}") from error
        if self.protocol is not None:
            self.protocol.close()
        self.protocol = protocol
        return protocol

    def close(self) -> None:
        if self.protocol is not None:
            self.protocol.close()
            self.protocol = None


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MuxClient] = weakref.WeakKeyDictionary()


def get_mux() -> MuxClient:
    """The running loop's multiplexed client."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = MuxClient(redis_url(), settings.REDIS_SOCKET_TIMEOUT)
    return client


def supported(url: str) -> bool:
    return url.startswith(("redis://", "unix://"))


def has_client(loop: asyncio.AbstractEventLoop) -> bool:
    return loop in _clients


def forget(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Close and forget the client of `loop` (every loop's when None)."""
    for key in list(_clients) if loop is None else [loop]:
        client = _clients.pop(key, None)
        if client is not None:
            client.close()


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class Commands:
    """Commands queued by the names of redis-py's pipeline methods, so code that builds a pipeline serves both
    clients; `replies()` gives each reply as redis-py's method would (HGETALL a dict, SMEMBERS a set). Only
    the commands the job path and the fleet-wide reads send are here."""

    __slots__ = ("commands", "converters")

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []
        self.converters: list[Any] = []

    def _add(self, *args: Any, convert: Any = None) -> None:
        self.commands.append(args)
        self.converters.append(convert)

    def evalsha(self, digest: str, numkeys: int, *keys_and_args: Any) -> None:
        self._add("EVALSHA", digest, numkeys, *keys_and_args)

    def get(self, key: str) -> None:
        self._add("GET", key)

    def set(self, key: str, value: Any) -> None:
        self._add("SET", key, value)

    def hget(self, key: str, field: str) -> None:
        self._add("HGET", key, field)

    def hmget(self, key: str, fields: Sequence[str], *more: str) -> None:
        self._add("HMGET", key, *([fields] if isinstance(fields, str) else fields), *more)

    def hgetall(self, key: str) -> None:
        self._add("HGETALL", key, convert=_pairs)

    def zcard(self, key: str) -> None:
        self._add("ZCARD", key)

    def zcount(self, key: str, low: Any, high: Any) -> None:
        self._add("ZCOUNT", key, low, high)

    def zrem(self, key: str, *members: Any) -> None:
        self._add("ZREM", key, *members)

    def srandmember(self, key: str, number: int | None = None) -> None:
        self._add(*(("SRANDMEMBER", key) if number is None else ("SRANDMEMBER", key, number)))

    def smembers(self, key: str) -> None:
        self._add("SMEMBERS", key, convert=set)

    def replies(self, raw: list[Any]) -> list[Any]:
        return [
            reply if convert is None or isinstance(reply, Exception) else convert(reply)
            for reply, convert in zip(raw, self.converters, strict=True)
        ]


async def command(*args: Any) -> Any:
    """One command on the multiplexed connection (on redis-py's client where it does not apply), for the
    commands whose reply needs no conversion (strings, integers, lists of them)."""
    if supported(redis_url()):
        return await get_mux().execute(*args)
    from core.redis import get_redis

    return await get_redis().execute_command(*args)


async def read_hash(key: str) -> dict[str, str]:
    """HGETALL on the multiplexed connection (on redis-py where it does not apply)."""
    if supported(redis_url()):
        return await get_mux().hgetall(key)
    from core.redis import get_redis

    return await get_redis().hgetall(key)

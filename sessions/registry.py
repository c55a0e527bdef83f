"""Live sessions in Redis: which sessions are open, on which instance, for the admin's live view and for the
per-key session limit, shared by every instance.

Each session is a hash (`sched:session:{id}`) with a TTL and a member of `sched:sessions:live` scored by its
expiry; the key's slots are a sorted set of session ids scored by expiry (session_slot.lua). The instance
holding the socket refreshes all three every third of `SESSIONS_TTL_S`, so a session whose instance died
disappears, and frees its slot, by itself.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from django.conf import settings

from core import audit, scripts
from core.redis import get_redis, keys

# Sessions without a key (SESSIONS_OPEN_ACCESS) share one bucket of slots.
OPEN_BUCKET = "open"


def _ttl_ms() -> int:
    return int(settings.SESSIONS_TTL_S * 1000)


async def claim_session_id() -> str:
    """A fresh `s-` + 8 upper-case hex id that no live session holds (32 bits collide among many sessions)."""
    while True:
        session_id = f"s-{secrets.token_hex(4).upper()}"
        async with get_redis().pipeline(transaction=False) as pipe:
            pipe.hsetnx(keys().session(session_id), "claimed_at", int(time.time() * 1000))
            # On a collision this renews the other session's listing, which its owner does anyway.
            pipe.pexpire(keys().session(session_id), _ttl_ms())
            claimed, _ = await pipe.execute()
        if claimed:
            return session_id


async def acquire_slot(bucket: str, session_id: str) -> tuple[bool, int]:
    """Take one of the bucket's session slots; (granted, sessions the bucket holds now)."""
    result = await scripts.run(
        "session_slot", [keys().key_sessions(bucket)], [session_id, "acquire", settings.SESSIONS_MAX_PER_KEY, _ttl_ms()]
    )
    return result[0] == "OK", int(result[1])


async def publish(session_id: str, fields: dict[str, Any], audit_entry: dict[str, Any] | None = None) -> None:
    """Write the session's live fields (all or the changed ones) and keep it listed; with `audit_entry`, the
    session's audit entry rides in the same round trip."""
    k = keys()
    async with get_redis().pipeline(transaction=False) as pipe:
        pipe.hset(k.session(session_id), mapping={name: str(value) for name, value in fields.items()})
        pipe.pexpire(k.session(session_id), _ttl_ms())
        pipe.zadd(k.sessions_live, {session_id: int(time.time() * 1000) + _ttl_ms()})
        if audit_entry is not None:
            audit.add(pipe, "sessions", **audit_entry)
        await pipe.execute()


async def refresh(bucket: str, session_id: str, fields: dict[str, Any]) -> None:
    await scripts.run("session_slot", [keys().key_sessions(bucket)], [session_id, "refresh", settings.SESSIONS_MAX_PER_KEY, _ttl_ms()])
    await publish(session_id, fields)


async def release(bucket: str, session_id: str) -> None:
    """Unlist the session, then free its slot: whoever sees the slot free sees the session gone too."""
    k = keys()
    async with get_redis().pipeline(transaction=False) as pipe:
        pipe.delete(k.session(session_id))
        pipe.zrem(k.sessions_live, session_id)
        await pipe.execute()
    await scripts.run("session_slot", [k.key_sessions(bucket)], [session_id, "release", settings.SESSIONS_MAX_PER_KEY, _ttl_ms()])


async def live_sessions(limit: int = 500) -> tuple[int, list[dict[str, str]]]:
    """How many sessions are live, and the newest `limit` of them as their hashes hold them."""
    k = keys()
    client = get_redis()
    now = int(time.time() * 1000)
    async with client.pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(k.sessions_live, "-inf", now)
        pipe.zcard(k.sessions_live)
        pipe.zrange(k.sessions_live, 0, limit - 1, desc=True)
        _, total, ids = await pipe.execute()
    async with client.pipeline(transaction=False) as pipe:
        for session_id in ids:
            pipe.hgetall(k.session(session_id))
        rows = await pipe.execute()
    sessions = [{"session_id": sid, **row} for sid, row in zip(ids, rows, strict=True) if row.get("opened_at")]
    sessions.sort(key=lambda row: int(row["opened_at"]), reverse=True)
    return int(total), sessions

"""A session socket that dies frees everything it held; its jobs in flight end normally."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from channels.db import database_sync_to_async

from access.models import ApiKey, Scope
from core.redis import get_redis, keys
from tests.jobs.support import capacity_in_use, ready_node, result_for
from tests.sessions.support import SessionClient

pytestmark = pytest.mark.django_db(transaction=True)


async def until(predicate, what: str) -> None:
    for _ in range(100):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(what)


async def test_a_dropped_socket_frees_its_slot_and_listing_and_its_job_still_ends_done(server, node_token, sessions_key):
    reader = (await database_sync_to_async(ApiKey.issue)("reader", [Scope.JOBS_READ]))[1]
    node, node_id = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.speak()
    await client.chunk()  # buffered audio of the next utterance, never cut
    assign = await node.expect("job_assign")
    k = keys()
    assert await get_redis().zcard(k.sessions_live) == 1
    client.ws.transport.abort()  # the connection drops: no close frame

    async def freed() -> bool:
        return await get_redis().zcard(k.key_sessions(sessions_key.partition(".")[0])) == 0

    await until(freed, "the session's slot was never freed")
    assert await get_redis().zcard(k.sessions_live) == 0
    assert not await get_redis().exists(k.session(client.session_id))

    await node.send(result_for(assign, node_id))
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {reader}"}) as api:
        job = (await api.get(f"/api/v1/jobs/{assign['job_id']}", params={"wait": 5})).json()
    assert job["state"] == "DONE"
    assert await capacity_in_use(node_id) == 0
    assert [f["type"] for f in node.frames].count("job_assign") == 1, "the buffered chunk never became a job"
    await node.close()


async def test_the_sessions_of_an_instance_that_died_free_their_slots_by_themselves(start_session_server, sessions_key):
    server = start_session_server(SESSIONS_TTL_S="1.5", SESSIONS_MAX_PER_KEY="1")
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    server.kill()  # SIGKILL: no disconnect handler runs
    other = start_session_server(SESSIONS_TTL_S="1.5", SESSIONS_MAX_PER_KEY="1")
    k = keys()

    async def expired() -> bool:
        # The slot script sweeps expired members before counting; ZCOUNT of live ones shows the same here.
        seconds, micros = await get_redis().time()
        now = seconds * 1000 + micros // 1000
        return await get_redis().zcount(k.key_sessions(sessions_key.partition(".")[0]), now, "+inf") == 0

    await until(expired, "the dead instance's session kept its slot")
    fresh = await SessionClient.connect(other.ws_url, sessions_key)
    await fresh.init()
    await fresh.close()

"""Who may open a session: an API key with the `sessions` scope in the URL or a header, from an allowed
Origin; open access only when configured."""

from __future__ import annotations

import pytest
import websockets
from channels.db import database_sync_to_async

from access.models import ApiKey, Scope
from tests.sessions.support import SessionClient

pytestmark = pytest.mark.django_db(transaction=True)


async def refused_status(server, key: str | None, **kwargs) -> int:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await SessionClient.connect(server.ws_url, key, **kwargs)
    return refused.value.response.status_code


async def test_a_key_with_the_sessions_scope_is_accepted_in_the_url_as_the_web_client_sends_it(server, sessions_key):
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.close()


async def test_a_key_in_the_authorization_header_is_accepted(server, sessions_key):
    client = await SessionClient.connect(server.ws_url, sessions_key, header=True)
    await client.init()
    await client.close()


async def test_no_key_an_unknown_key_or_a_key_without_the_scope_is_refused_with_403(server, sessions_key):
    jobs_only = (await database_sync_to_async(ApiKey.issue)("rest", [Scope.JOBS_WRITE]))[1]
    assert await refused_status(server, None) == 403
    assert await refused_status(server, sessions_key[:-4] + "AAAA") == 403
    assert await refused_status(server, jobs_only) == 403


async def test_a_revoked_key_is_refused(server, sessions_key):
    await database_sync_to_async(ApiKey.revoke)(ApiKey.objects.all(), "ops")
    assert await refused_status(server, sessions_key) == 403


async def test_a_browser_page_of_an_origin_not_on_the_list_is_refused_even_with_a_key(start_session_server, sessions_key):
    server = start_session_server(SESSIONS_ALLOWED_ORIGINS="https://app.example.com")
    assert await refused_status(server, sessions_key, origin="https://evil.example.net") == 403
    client = await SessionClient.connect(server.ws_url, sessions_key, origin="https://app.example.com")
    await client.init()
    await client.close()


async def test_by_default_no_browser_origin_is_allowed_and_clients_without_origin_are(server, sessions_key):
    assert await refused_status(server, sessions_key, origin="http://localhost:5173") == 403
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.close()


async def test_open_access_takes_sessions_without_a_key_but_still_refuses_a_bad_one(start_session_server, sessions_key):
    server = start_session_server(SESSIONS_OPEN_ACCESS="true")
    client = await SessionClient.connect(server.ws_url, None)
    await client.init()
    await client.close()
    assert await refused_status(server, "ak_nothing.wrong") == 403

"""A credential presented without its dot is all secret: the refusal's log line names no part of it."""

from __future__ import annotations

import secrets

import httpx
import pytest
import websockets

from tests.support.wire import Wire

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_dotless_token_or_key_leaves_no_part_of_itself_in_the_log(server):
    dotless = secrets.token_urlsafe(32)
    with pytest.raises(websockets.InvalidStatus):
        await Wire.connect(server.ws_url, dotless)
    async with httpx.AsyncClient(base_url=server.url) as client:
        api = await client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {dotless}"})
        link = await client.post("/api/v1/node-link/register", json={}, headers={"Authorization": f"Bearer {dotless}"})
    assert (api.status_code, link.status_code) == (401, 401)

    log = server.log_text()
    assert "node_unauthorized" in log  # the refusal was logged
    for start in range(0, len(dotless) - 8):
        assert dotless[start : start + 8] not in log

"""Failed authentication is limited per client address: wrong API keys and wrong node tokens past
AUTH_FAILURE_LIMIT get 429 (403 at a node handshake) without a database read, even with a right credential,
until the window ends; admin logins are locked out by django-axes. Each is counted in /metrics."""

from __future__ import annotations

import re

import httpx
import pytest
import websockets
from django.contrib.auth import get_user_model

from tests.support.metrics import scrape_url
from tests.support.wire import Wire

pytestmark = pytest.mark.django_db(transaction=True)

WRONG_KEY = "ak_000000000000.not-the-secret"
WRONG_TOKEN = "nt_000000000000.not-the-secret"


# The job list goes through Django Ninja; a single job's read is one of the two lean hot routes.
@pytest.mark.parametrize("path", ["/api/v1/jobs", "/api/v1/jobs/job-0000000000000000"])
async def test_wrong_api_keys_past_the_limit_get_429_with_retry_after_even_for_a_right_key(start_server, api_key, path):
    server = start_server(AUTH_FAILURE_LIMIT="3", AUTH_FAILURE_WINDOW_S="30")
    async with httpx.AsyncClient(base_url=server.url) as client:
        wrong = [
            (await client.get(path, headers={"Authorization": f"Bearer {WRONG_KEY}"})).status_code
            for _ in range(3)
        ]
        limited = await client.get(path, headers={"Authorization": f"Bearer {api_key}"})
    assert wrong == [401, 401, 401]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(limited.headers["Retry-After"]) <= 30
    samples = scrape_url(server.url)
    assert samples[("scheduler_auth_failures_total", (("kind", "api_key"),))] == 3
    assert samples[("scheduler_auth_throttled_total", (("kind", "api_key"),))] == 1


async def test_a_right_key_is_served_while_the_address_is_under_the_limit(start_server, api_key):
    server = start_server(AUTH_FAILURE_LIMIT="3")
    async with httpx.AsyncClient(base_url=server.url) as client:
        for _ in range(2):
            await client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {WRONG_KEY}"})
        answer = await client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {api_key}"})
    assert answer.status_code == 200


async def test_wrong_node_tokens_past_the_limit_refuse_handshakes_and_the_http_link(start_server, node_token):
    server = start_server(AUTH_FAILURE_LIMIT="3", AUTH_FAILURE_WINDOW_S="30")
    for _ in range(3):
        with pytest.raises(websockets.InvalidStatus):
            await Wire.connect(server.ws_url, WRONG_TOKEN)
    with pytest.raises(websockets.InvalidStatus) as refused:
        await Wire.connect(server.ws_url, node_token)  # right token, throttled address
    assert refused.value.response.status_code == 403
    async with httpx.AsyncClient(base_url=server.url) as client:
        link = await client.post(
            "/api/v1/node-link/register", json={}, headers={"Authorization": f"Bearer {node_token}"}
        )
    assert link.status_code == 429
    assert link.json()["code"] == "RATE_LIMITED"
    assert "Retry-After" in link.headers
    samples = scrape_url(server.url)
    assert samples[("scheduler_node_handshakes_rejected_total", (("reason", "rate_limited"),))] == 1
    assert samples[("scheduler_auth_failures_total", (("kind", "node_token"),))] == 3


def test_admin_logins_are_locked_out_after_the_failure_limit(start_server, transactional_db):
    get_user_model().objects.create_superuser("root", password="the-right-password")
    server = start_server(ADMIN_LOGIN_FAILURE_LIMIT="3")
    with httpx.Client(base_url=server.url) as browser:

        def log_in(password: str) -> httpx.Response:
            page = browser.get("/admin/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            return browser.post(
                "/admin/login/",
                data={"username": "root", "password": password, "csrfmiddlewaretoken": token, "next": "/admin/"},
            )

        attempts = [log_in("wrong").status_code for _ in range(3)]
        locked = log_in("the-right-password")
        assert "sessionid" not in browser.cookies
    assert attempts[:2] == [200, 200]  # the form again, with an error
    assert locked.status_code == 429
    samples = scrape_url(server.url)
    assert samples[("scheduler_auth_failures_total", (("kind", "admin_login"),))] >= 3
    assert samples[("scheduler_auth_throttled_total", (("kind", "admin_login"),))] >= 1
    assert "the-right-password" not in server.log_text()

"""A process trusts a verified API key for API_KEY_CACHE_S, then asks the database again: up to twice that
age it answers from the cache while one lookup refreshes the entry in the background, and concurrent
requests of one key share one lookup."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from access.models import ApiKey, Scope
from tests.api.conftest import KeyClient

pytestmark = pytest.mark.django_db(transaction=True)


async def revoked_after_use(issue_key, settings, monkeypatch) -> tuple[KeyClient, list[float]]:
    """A client whose key was used once (and so cached), then revoked; and the cache's clock to move."""
    settings.API_KEY_CACHE_S = 5
    clock = [1000.0]
    monkeypatch.setattr("access.auth.time.monotonic", lambda: clock[0])
    key = await issue_key(Scope.NODES_READ)
    api = KeyClient(key)
    assert (await api.get("/api/v1/nodes")).status_code == 200
    await database_sync_to_async(ApiKey.objects.filter(pk=key.partition(".")[0]).update)(revoked_at=timezone.now())
    return api, clock


async def test_a_revoked_key_keeps_working_only_until_the_cache_window_ends(issue_key, settings, monkeypatch):
    api, clock = await revoked_after_use(issue_key, settings, monkeypatch)
    clock[0] += 4
    assert (await api.get("/api/v1/nodes")).status_code == 200
    clock[0] += 2
    # Past the window: this request is still answered from the cache, and starts the refresh that finds
    # the key revoked; the requests after it are refused.
    assert (await api.get("/api/v1/nodes")).status_code == 200
    for _ in range(100):
        if (await api.get("/api/v1/nodes")).status_code == 401:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the revoked key was still accepted after its refresh")


async def test_past_twice_the_window_a_revoked_key_is_refused_at_once(issue_key, settings, monkeypatch):
    api, clock = await revoked_after_use(issue_key, settings, monkeypatch)
    clock[0] += 11
    assert (await api.get("/api/v1/nodes")).status_code == 401


async def test_concurrent_requests_of_one_key_share_one_lookup(issue_key, settings, monkeypatch):
    from access import auth

    settings.API_KEY_CACHE_S = 5
    key = await issue_key(Scope.NODES_READ)
    looked_up = []
    check_key = auth.check_key

    def counting(presented):
        looked_up.append(presented)
        return check_key(presented)

    monkeypatch.setattr(auth, "check_key", counting)
    auth.forget_verified_keys()
    api = KeyClient(key)
    answers = await asyncio.gather(*(api.get("/api/v1/nodes") for _ in range(8)))
    assert [answer.status_code for answer in answers] == [200] * 8
    assert len(looked_up) == 1


async def test_a_wrong_secret_is_never_served_from_the_cache(issue_key, settings):
    settings.API_KEY_CACHE_S = 5
    key = await issue_key(Scope.NODES_READ)
    assert (await KeyClient(key).get("/api/v1/nodes")).status_code == 200
    forged = key.partition(".")[0] + ".not-the-secret"
    assert (await KeyClient(forged).get("/api/v1/nodes")).status_code == 401

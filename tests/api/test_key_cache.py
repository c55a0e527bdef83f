"""A process trusts a verified API key for API_KEY_CACHE_S, then asks the database again."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from access.models import ApiKey, Scope
from tests.api.conftest import KeyClient

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_revoked_key_keeps_working_only_until_the_cache_window_ends(issue_key, settings, monkeypatch):
    settings.API_KEY_CACHE_S = 5
    clock = [1000.0]
    monkeypatch.setattr("access.auth.time.monotonic", lambda: clock[0])
    key = await issue_key(Scope.NODES_READ)
    api = KeyClient(key)
    assert (await api.get("/api/v1/nodes")).status_code == 200

    await database_sync_to_async(ApiKey.objects.filter(pk=key.partition(".")[0]).update)(revoked_at=timezone.now())
    clock[0] += 4
    assert (await api.get("/api/v1/nodes")).status_code == 200
    clock[0] += 2
    assert (await api.get("/api/v1/nodes")).status_code == 401


async def test_a_wrong_secret_is_never_served_from_the_cache(issue_key, settings):
    settings.API_KEY_CACHE_S = 5
    key = await issue_key(Scope.NODES_READ)
    assert (await KeyClient(key).get("/api/v1/nodes")).status_code == 200
    forged = key.partition(".")[0] + ".not-the-secret"
    assert (await KeyClient(forged).get("/api/v1/nodes")).status_code == 401

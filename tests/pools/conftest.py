"""Fixtures of the pools tests: API clients holding keys made in code."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from access.models import ApiKey
from tests.api.conftest import KeyClient


async def key_client(*scopes: str) -> KeyClient:
    return KeyClient((await database_sync_to_async(ApiKey.issue)("pools test key", list(scopes)))[1])


@pytest.fixture
async def pools_reader(transactional_db: None) -> KeyClient:
    return await key_client("pools:read")


@pytest.fixture
async def nodes_reader(transactional_db: None) -> KeyClient:
    """A key with every scope but pools:read."""
    return await key_client("nodes:read", "nodes:write", "jobs:read", "jobs:write")

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model

from access.models import ApiKey, Scope
from nodes.models import NodeToken
from tests.support.processes import AsgiServer


def _issue(name: str = "test", **kwargs: object) -> str:
    return NodeToken.issue(name, **kwargs)[1]  # type: ignore[arg-type]


@pytest.fixture
def issue_token(transactional_db) -> Callable[..., Awaitable[str]]:
    """`await issue_token(name, node_id=..., expires_at=...)` -> plaintext token, from async tests."""
    return database_sync_to_async(_issue)


@pytest.fixture
def node_token(transactional_db) -> str:
    return _issue("node")


@pytest.fixture
def server(start_server: Callable[..., AsgiServer]) -> AsgiServer:
    return start_server()


@pytest.fixture
def api_key(transactional_db) -> str:
    return ApiKey.issue("tests", [Scope.NODES_READ, Scope.NODES_WRITE])[1]


@pytest.fixture
def admin_login(transactional_db, client, settings, server_env) -> dict[str, str]:
    """Session cookies of a logged-in superuser, usable against a server process sharing the database."""
    settings.SECRET_KEY = server_env["SECRET_KEY"]  # sessions are signed with it
    user = get_user_model().objects.create_superuser("root", password="pw-for-tests")
    client.force_login(user)
    return {name: morsel.value for name, morsel in client.cookies.items()}

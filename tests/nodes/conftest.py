from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from asgiref.sync import sync_to_async

from nodes.models import NodeToken
from tests.support.processes import AsgiServer


def _issue(name: str = "test", **kwargs: object) -> str:
    return NodeToken.issue(name, **kwargs)[1]  # type: ignore[arg-type]


@pytest.fixture
def issue_token(transactional_db) -> Callable[..., Awaitable[str]]:
    """`await issue_token(name, node_id=..., expires_at=...)` -> plaintext token, from async tests."""
    return sync_to_async(_issue)


@pytest.fixture
def node_token(transactional_db) -> str:
    return _issue("node")


@pytest.fixture
def server(start_server: Callable[..., AsgiServer]) -> AsgiServer:
    return start_server()

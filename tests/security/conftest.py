from __future__ import annotations

from collections.abc import Callable

import pytest

from access.models import ApiKey, Scope
from nodes.models import NodeToken
from tests.support.processes import AsgiServer


@pytest.fixture
def node_token(transactional_db) -> str:
    return NodeToken.issue("hostile input")[1]


@pytest.fixture
def api_key(transactional_db) -> str:
    return ApiKey.issue("hostile input", list(Scope.values))[1]


@pytest.fixture
def server(start_server: Callable[..., AsgiServer]) -> AsgiServer:
    return start_server()


def error_of(response) -> dict:  # type: ignore[no-untyped-def]
    return response.json()["error"]

from collections.abc import Callable

import pytest

from access.models import ApiKey, Scope
from tests.nodes.conftest import issue_token, node_token  # noqa: F401  (shared fixtures)
from tests.support.processes import AsgiServer

# Nodes driven by hand stay alive for the test's length; cutting timings short enough to wait for.
SESSION_SERVER = {"NODE_HEARTBEAT_TIMEOUT_S": "60", "NODE_WARMUP_TIMEOUT_S": "60", "SESSIONS_PAUSE_MS": "400"}


@pytest.fixture
def start_session_server(start_server: Callable[..., AsgiServer]) -> Callable[..., AsgiServer]:
    def start(**overrides: str) -> AsgiServer:
        return start_server(**{**SESSION_SERVER, **overrides})

    return start


@pytest.fixture
def server(start_session_server: Callable[..., AsgiServer]) -> AsgiServer:
    return start_session_server()


@pytest.fixture
def sessions_key(transactional_db) -> str:
    return ApiKey.issue("web client", [Scope.SESSIONS])[1]

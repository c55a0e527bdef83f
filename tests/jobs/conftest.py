from collections.abc import Callable

import pytest

from access.models import ApiKey, Scope
from tests.nodes.conftest import issue_token, node_token  # noqa: F401  (shared fixtures)
from tests.support.processes import AsgiServer

# Job tests drive nodes by hand and do not keep them heartbeating: keep them alive for the test's length.
QUIET_NODES = {"NODE_HEARTBEAT_TIMEOUT_S": "60", "NODE_WARMUP_TIMEOUT_S": "60"}


@pytest.fixture
def start_job_server(start_server: Callable[..., AsgiServer]) -> Callable[..., AsgiServer]:
    def start(**overrides: str) -> AsgiServer:
        return start_server(**{**QUIET_NODES, **overrides})

    return start


@pytest.fixture
def server(start_job_server: Callable[..., AsgiServer]) -> AsgiServer:
    return start_job_server()


@pytest.fixture
def jobs_key(transactional_db) -> str:
    return ApiKey.issue("jobs", [Scope.JOBS_WRITE, Scope.JOBS_READ])[1]

"""Which ASGI server `make run` starts (WEB_SERVER), and the one command line that starts either."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler.env import EnvError
from supervisor.config import Config
from supervisor.webserver import APPLICATION, DEFAULT_SERVER, HTTP_PROTOCOL, server_command
from tests.nodes.conftest import node_token  # noqa: F401, F811  (shared fixture)

ROOT = Path(__file__).resolve().parents[2]


def test_uvicorn_is_the_default_and_daphne_can_be_chosen_in_any_case() -> None:
    assert DEFAULT_SERVER == "uvicorn"
    assert Config.from_environ({}).web_server == "uvicorn"
    assert Config.from_environ({"WEB_SERVER": " Daphne "}).web_server == "daphne"


def test_an_unknown_server_is_refused_naming_the_variable() -> None:
    with pytest.raises(EnvError, match="WEB_SERVER must be one of uvicorn, daphne, not 'nginx'"):
        Config.from_environ({"WEB_SERVER": "nginx"})


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("uvicorn", ["-m", "uvicorn", "--host", "0.0.0.0", "--port", "9000", "--lifespan", "on", "--no-access-log",
                     "--no-server-header", "--ws-per-message-deflate", "false", "--http", HTTP_PROTOCOL, "--ws-max-size",
                     "2048", "--ws-ping-interval", "15", "--ws-ping-timeout", "10", "--timeout-graceful-shutdown", "5",
                     APPLICATION]),
        ("daphne", ["-m", "supervisor.serve", "-b", "0.0.0.0", "-p", "9000", "--websocket-max-message-size", "2048",
                    "--websocket-max-frame-size", "2048", "--ping-interval", "15", "--ping-timeout", "10",
                    "--application-close-timeout", "5", APPLICATION]),
    ],
)  # fmt: skip
def test_both_servers_get_the_address_and_the_message_limit(server: str, expected: list[str]) -> None:
    assert server_command(server, "0.0.0.0", 9000, 2048) == [sys.executable, *expected]


def test_without_a_limit_the_servers_keep_their_own() -> None:
    assert not any("max" in arg for arg in server_command("uvicorn", "127.0.0.1", 8000))
    assert not any("max" in arg for arg in server_command("daphne", "127.0.0.1", 8000))


def test_the_supervisor_stops_at_once_on_an_unknown_server_and_says_why(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "supervisor.runner"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "WEB_SERVER": "nginx", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 1
    assert "WEB_SERVER must be one of uvicorn, daphne, not 'nginx'" in result.stdout + result.stderr
    assert "Started" not in result.stdout


def test_make_run_starts_one_web_process_per_usable_core_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})

    assert Config.from_environ({}).web_processes == 3
    assert Config.from_environ({"WEB_PROCESSES": "1"}).web_processes == 1
    # Where several processes cannot work, the default is one rather than a refusal to start.
    assert Config.from_environ({"WEB_SERVER": "daphne"}).web_processes == 1
    assert Config.from_environ({"INSTANCE_ID": "web-a"}).web_processes == 1


def test_several_processes_need_uvicorn_and_their_own_instance_ids() -> None:
    assert Config.from_environ({"WEB_PROCESSES": "3"}).web_processes == 3
    with pytest.raises(EnvError, match="WEB_PROCESSES=2 needs WEB_SERVER=uvicorn"):
        Config.from_environ({"WEB_PROCESSES": "2", "WEB_SERVER": "daphne"})
    with pytest.raises(EnvError, match="INSTANCE_ID set would give every process the same id"):
        Config.from_environ({"WEB_PROCESSES": "2", "INSTANCE_ID": "web-a"})
    assert server_command("uvicorn", "127.0.0.1", 8000, processes=2)[-3:] == ["--workers", "2", APPLICATION]
    with pytest.raises(ValueError):
        server_command("daphne", "127.0.0.1", 8000, processes=2)


@pytest.mark.django_db(transaction=True)
async def test_two_processes_on_one_port_each_advertise_and_jobs_reach_nodes_on_either(start_server, node_token):  # noqa: F811
    """WEB_PROCESSES=2: uvicorn's workers share the port; each is an instance, nodes spread over both, and a job
    accepted by one reaches a node held by the other through the channel layer."""
    from channels.db import database_sync_to_async

    from access.models import ApiKey, Scope
    from jobs.loadgen import LoadConfig, run_load
    from tests.jobs.support import ready_fleet
    from tests.support.metrics import scrape_url

    key = (await database_sync_to_async(ApiKey.issue)("two", [Scope.JOBS_WRITE, Scope.JOBS_READ]))[1]
    server = start_server(
        server="uvicorn", extra_args=["--workers", "2"], NODE_HEARTBEAT_TIMEOUT_S="60", NODE_WARMUP_TIMEOUT_S="60"
    )
    async with ready_fleet(server.ws_url, node_token, 6, processing_ms=0, heartbeat_interval_s=5, seed=5):
        report = await run_load(
            LoadConfig(api_key=key, url=server.url, count=40, concurrency=4, src_lang="en", tgt_lang="zh", wait_s=10)
        )
        assert report.terminal["DONE"] == 40, report.format_text()
        instances = scrape_url(server.url)[("scheduler_instances", ())]
    assert instances == 2

"""Which ASGI server `make run` starts (WEB_SERVER), and the one command line that starts either."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scheduler.env import EnvError
from scheduler.runner import Config
from scheduler.webserver import APPLICATION, DEFAULT_SERVER, server_command

ROOT = Path(__file__).resolve().parent.parent


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
                     "--no-server-header", "--ws-per-message-deflate", "false", "--ws-max-size", "2048", APPLICATION]),
        ("daphne", ["-m", "scheduler.serve", "-b", "0.0.0.0", "-p", "9000", "--websocket-max-message-size", "2048",
                    "--websocket-max-frame-size", "2048", APPLICATION]),
    ],
)  # fmt: skip
def test_both_servers_get_the_address_and_the_message_limit(server: str, expected: list[str]) -> None:
    assert server_command(server, "0.0.0.0", 9000, 2048) == [sys.executable, *expected]


def test_without_a_limit_the_servers_keep_their_own() -> None:
    assert not any("max" in arg for arg in server_command("uvicorn", "127.0.0.1", 8000))
    assert not any("max" in arg for arg in server_command("daphne", "127.0.0.1", 8000))


def test_the_supervisor_stops_at_once_on_an_unknown_server_and_says_why(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scheduler.runner"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "WEB_SERVER": "nginx", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 1
    assert "WEB_SERVER must be one of uvicorn, daphne, not 'nginx'" in result.stdout + result.stderr
    assert "Started" not in result.stdout

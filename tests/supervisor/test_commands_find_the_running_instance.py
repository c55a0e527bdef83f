"""Management commands run from another shell with nothing exported find the instance `make run` started,
through its run file, and say which one they use; a run file whose `make run` has stopped is ignored, and a
tool that cannot reach a scheduler says so and exits non-zero instead of retrying or reporting zeros."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import runfile
from supervisor.embedded_redis import RedisProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(90)


def write_run_file(path: Path, pid: int, redis_url: str, port: int, database: Path) -> None:
    runfile.write(
        path,
        runfile.RunInfo(
            pid=pid, started_at="2026-01-01T00:00:00Z", url=f"http://127.0.0.1:{port}",
            node_url=f"ws://127.0.0.1:{port}/ws/node", web_host="127.0.0.1", web_port=port, redis_url=redis_url,
            secret_key_file="", database_url=f"sqlite:///{database}", log_file="", admin_password_file="",
        ),
    )  # fmt: skip


def manage(*args: str, run_file: Path) -> subprocess.CompletedProcess[str]:
    """A command as a new shell runs it: none of the project's variables, only where the run file is."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    env["RUN_FILE"] = str(run_file)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def redis(tmp_path: Path):
    with RedisProcess() as server:
        yield server


def test_cluster_status_reads_the_redis_named_in_the_run_file_and_says_so(tmp_path: Path, redis) -> None:
    run_file = tmp_path / "run.json"
    # This test process stands in for a running supervisor: the file counts only while its pid lives.
    write_run_file(run_file, os.getpid(), redis.url, free_port(), tmp_path / "db.sqlite3")
    assert run_file.stat().st_mode & 0o077 == 0

    done = manage("cluster_status", run_file=run_file)

    assert done.returncode == 0, done.stderr
    address = runfile.redis_address(redis.url)
    assert f"Using the instance `make run` started (pid {os.getpid()}, {run_file}): Redis {address}" in done.stderr
    assert "Instances (0)" in done.stdout


def test_a_run_file_of_a_stopped_make_run_is_ignored(tmp_path: Path, redis) -> None:
    run_file = tmp_path / "run.json"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_run_file(run_file, int(finished.stdout), redis.url, free_port(), tmp_path / "db.sqlite3")

    done = manage("cluster_status", run_file=run_file)

    first_line = done.stderr.splitlines()[0]
    assert first_line == "Using Redis 127.0.0.1:6379/0 (REDIS_URL is unset and no `make run` is running here)", done.stderr


def test_simulate_nodes_exits_1_with_the_address_when_nothing_answers(tmp_path: Path, redis) -> None:
    port = free_port()
    run_file = tmp_path / "run.json"
    write_run_file(run_file, os.getpid(), redis.url, port, tmp_path / "db.sqlite3")

    done = manage(
        "simulate_nodes", "--count", "2", "--token", "nt_000000000000.secret", "--connect-timeout", "2",
        run_file=run_file,
    )  # fmt: skip

    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"web http://127.0.0.1:{port}" in done.stderr  # it followed the run file, not port 8000
    assert f"no node could register at ws://127.0.0.1:{port}/ws/node within 2 s" in done.stderr
    assert "ConnectionRefusedError" in done.stderr or "Connect call failed" in done.stderr, done.stderr
    assert "secret" not in done.stdout + done.stderr.replace("nt_000000000000.***", "")


def test_submit_jobs_exits_1_with_the_address_when_nothing_answers(tmp_path: Path, redis) -> None:
    port = free_port()
    run_file = tmp_path / "run.json"
    write_run_file(run_file, os.getpid(), redis.url, port, tmp_path / "db.sqlite3")

    done = manage("submit_jobs", "--api-key", "ak_000000000000.secret", "--count", "3", run_file=run_file)

    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"cannot reach the scheduler at http://127.0.0.1:{port}" in done.stderr
    assert "Submitted" not in done.stdout


def test_the_run_file_is_json_a_reader_of_a_half_written_one_ignores(tmp_path: Path) -> None:
    run_file = tmp_path / "run.json"
    run_file.write_text('{"pid": ')
    assert runfile.read(run_file) is None
    run_file.write_text(json.dumps({"pid": os.getpid()}))
    assert runfile.read(run_file) is None

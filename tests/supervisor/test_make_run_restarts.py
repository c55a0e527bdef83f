"""`make run` keeps the stack up: a Celery worker or an embedded Redis that dies is started again (Redis on the
same port, with what its append-only file holds) while the web server keeps serving; and Ctrl-C with node
sockets open stops every process in time, without killing any."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from nodes.simulator import Fleet, SimulatedNodeConfig
from supervisor.embedded_redis import free_port
from tests.supervisor.test_make_run import ROOT, alive, descendants, read_until


def pid_of(pattern: str, among: set[int]) -> int:
    """The process among `among` whose command line matches `pattern`."""
    for pid in among:
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and re.search(pattern, cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")):
            return pid
    raise AssertionError(f"no process matching {pattern!r}")


def wait_ready(base: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{base}/readyz did not answer 200 within {timeout} s")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("web_server", ["uvicorn", "daphne"])
def test_a_dead_worker_and_a_dead_redis_are_started_again_and_ctrl_c_with_nodes_connected_stops_cleanly(
    tmp_path, web_server
):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL", "DATABASE_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", WEB_PORT=str(port), SECRET_KEY="make-run-test",
        PYTHONUNBUFFERED="1", PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
        EMBEDDED_REDIS_DIR=str(tmp_path / "redis"), NODE_HEARTBEAT_INTERVAL_S="1", WEB_SERVER=web_server,
        # A run file of its own: other tests start `make run` from this checkout at the same time.
        RUN_FILE=str(tmp_path / "run.json"),
    )  # fmt: skip
    runner = subprocess.Popen(
        [sys.executable, "-m", "supervisor.runner"], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    base = f"http://127.0.0.1:{port}"
    try:
        read_until(runner, "lingua-scheduler is up", lines, timeout=120)
        redis_url = re.search(r"Embedded Redis is listening at (\S+)", "".join(lines)).group(1)
        client = redis.Redis.from_url(redis_url)
        client.set("sched:marker", "written before the crash")

        # The match may be a prefork pool child: kill the worker's whole process group, which the child shares.
        worker = pid_of(r"celery .* worker", descendants(runner.pid))
        os.killpg(os.getpgid(worker), signal.SIGKILL)
        read_until(runner, "Started Celery worker again", lines, timeout=30)

        redis_pid = pid_of(r"redis-server", descendants(runner.pid))
        os.kill(redis_pid, signal.SIGKILL)
        read_until(runner, "Embedded Redis is listening again", lines, timeout=30)
        assert client.get("sched:marker") == b"written before the crash"
        wait_ready(base)

        token_output = subprocess.run(
            [sys.executable, "manage.py", "create_node_token", "--name", "demo"],
            cwd=ROOT, env={**env, "REDIS_URL": redis_url}, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        token = re.search(r"(nt_[0-9a-f]{12}\.\S+)", token_output).group(1)

        async def stop_with_nodes_connected() -> None:
            fleet = Fleet.uniform(5, SimulatedNodeConfig(url=f"ws://127.0.0.1:{port}/ws/node", token=token))
            await fleet.start()
            try:
                await fleet.wait_until_registered(timeout=20)
                children = descendants(runner.pid)
                runner.send_signal(signal.SIGINT)
                await asyncio.to_thread(runner.wait, 60)
                await asyncio.sleep(0.5)
                assert [pid for pid in children if alive(pid)] == []
            finally:
                await fleet.stop()

        asyncio.run(stop_with_nodes_connected())
    finally:
        if runner.poll() is None:
            runner.send_signal(signal.SIGINT)
            try:
                runner.wait(timeout=30)
            finally:
                if runner.poll() is None:
                    os.killpg(runner.pid, signal.SIGKILL)
    output = "".join(lines) + runner.stdout.read()  # type: ignore[union-attr]
    assert runner.returncode == 0, output
    assert "did not stop in time" not in output, output
    assert output.count("unexpectedly; starting it again") == 2, output

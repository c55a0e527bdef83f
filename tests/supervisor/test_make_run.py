"""What a new user does first, end to end with real processes: `make run`'s supervisor brings up Redis,
web, worker and beat; simulated nodes show `ready` in the admin; Ctrl-C leaves no process behind."""

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

from nodes.simulator import Fleet, SimulatedNodeConfig
from supervisor.embedded_redis import free_port

ROOT = Path(__file__).resolve().parents[2]


def read_until(process: subprocess.Popen[str], marker: str, lines: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()  # type: ignore[union-attr]
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if marker in line:
            return
    raise AssertionError(f"{marker!r} not seen within {timeout} s:\n{''.join(lines)}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes: it runs nothing and holds no port.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[1].split()[0] != "Z"


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    pending = [pid]
    while pending:
        parent = pending.pop()
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True).stdout
        children = {int(p) for p in out.split()}
        found |= children
        pending.extend(children)
    return found


def login(base: str, username: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=base, follow_redirects=True, timeout=10)
    page = client.get("/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    client.post(
        "/admin/login/?next=/admin/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base}/admin/login/"},
    )
    return client


@pytest.mark.timeout(180)
def test_the_supervisor_starts_everything_nodes_show_ready_in_the_admin_and_ctrl_c_stops_all(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL", "DATABASE_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        WEB_PORT=str(port),
        SECRET_KEY="make-run-test",
        NODE_HEARTBEAT_INTERVAL_S="1",
        NODE_HEARTBEAT_TIMEOUT_S="5",
        PYTHONUNBUFFERED="1",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
        # This checkout's own files stay untouched (a developer's `make run` may be using them).
        RUN_FILE=str(tmp_path / "run.json"),
        ADMIN_PASSWORD_FILE=str(tmp_path / "admin-password"),
        LOG_FILE=str(tmp_path / "scheduler.log"),
        # Not the checkout's var/redis: a `make run` of the developer's may be using it.
        EMBEDDED_REDIS_DIR=str(tmp_path / "redis"),
    )
    # A file of an earlier run: the supervisor must empty the folder, or /metrics would add its counts.
    (tmp_path / "prometheus").mkdir()
    stale = tmp_path / "prometheus" / "counter_999999.db"
    stale.write_bytes(b"stale")
    runner = subprocess.Popen(
        [sys.executable, "-m", "supervisor.runner"], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        read_until(runner, "lingua-scheduler is up", lines, timeout=120)
        output = "".join(lines)
        password = re.search(r"password:\s+(\S+)", output).group(1)
        redis_url = re.search(r"Embedded Redis is listening at (\S+)", output).group(1)
        children = descendants(runner.pid)
        assert len(children) >= 4  # redis, web, worker, beat (and the worker's pool)

        token_output = subprocess.run(
            [sys.executable, "manage.py", "create_node_token", "--name", "demo"],
            cwd=ROOT, env={**env, "REDIS_URL": redis_url}, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        token = re.search(r"(nt_[0-9a-f]{12}\.\S+)", token_output).group(1)

        async def fleet_is_ready() -> None:
            base = SimulatedNodeConfig(
                url=f"ws://127.0.0.1:{port}/ws/node", token=token, heartbeat_interval_s=1, reconnect_initial_s=0.5
            )
            fleet = Fleet.uniform(20, base)
            await fleet.start()
            try:
                await fleet.wait_until_registered(timeout=20)
                admin = login(f"http://127.0.0.1:{port}", "admin", password)
                deadline = time.monotonic() + 30
                while True:
                    page = admin.get("/admin/nodes/node/?all=").text
                    # Rows appear once the Celery worker has written the audit entries.
                    if page.count("node-") >= 20 and page.count(">ready<") >= 20:
                        break
                    assert time.monotonic() < deadline, page[-3000:]
                    await asyncio.sleep(0.5)
                # Metrics of every process, summed: the web process counted the registrations, the worker's
                # pool children wrote the audit entries.
                body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
                registered = re.search(r'^scheduler_node_registrations_total\{result="ok"\} (\S+)$', body, re.M)
                assert registered and float(registered.group(1)) >= 20, body[:2000]
                written = re.search(r"^scheduler_audit_entries_written_total (\S+)$", body, re.M)
                assert written and float(written.group(1)) >= 20, body[:2000]
                assert not stale.exists()
                writers = {path.stem.rsplit("_", 1)[1] for path in (tmp_path / "prometheus").glob("counter_*.db")}
                assert len(writers) >= 2, writers
            finally:
                await fleet.stop()

        try:
            asyncio.run(fleet_is_ready())
        except BaseException:
            # What the scheduler's processes said is the evidence a failure here needs.
            runner.send_signal(signal.SIGINT)
            print("".join(lines) + runner.stdout.read())  # type: ignore[union-attr]
            raise
    finally:
        runner.send_signal(signal.SIGINT)
        try:
            runner.wait(timeout=30)
        finally:
            if runner.poll() is None:
                os.killpg(runner.pid, signal.SIGKILL)
    output = "".join(lines) + runner.stdout.read()  # type: ignore[union-attr]
    assert runner.returncode == 0, output
    time.sleep(0.5)
    assert [pid for pid in children if alive(pid)] == []

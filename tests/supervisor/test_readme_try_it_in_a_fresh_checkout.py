"""The README's "Try it", followed literally, as a new user would: in a fresh copy of the checkout, `make run`
in one shell, then every command of the README's other shells, run as written in shells with nothing
exported, reaches that instance and succeeds. The `make run` terminal stays quiet meanwhile.

The copy holds exactly the files git tracks (as they are in the working tree), so nothing of an earlier run
(var/, a run file, a secret key, a database) helps. Its `.venv` links to this checkout's, already installed:
installing packages is `make venv`'s business, and a fresh install here would need the network for minutes.
Ports are the one thing chosen for the first shell (`WEB_PORT`, the README's own knob), because 8000 may be
taken on a shared machine; the other shells are not told it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from supervisor.embedded_redis import free_port
from tests.supervisor.test_make_run import alive, descendants

ROOT = Path(__file__).resolve().parents[2]
# What a login shell of a new user has; nothing of the project.
SHELL_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "USER", "TMPDIR")


def readme_commands() -> list[str]:
    """The commands of the README's "Try it" section, in order, as written (comments dropped)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Try it", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            if command:
                commands.append(command)
    return commands


def fresh_checkout(target: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        source = ROOT / name
        if name and source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())
            (target / name).chmod(source.stat().st_mode)
    stamp = ROOT / ".venv" / ".installed.stamp"
    if not stamp.exists():
        pytest.fail("this checkout's .venv is not installed: run `make venv` first")
    (target / ".venv").symlink_to(ROOT / ".venv")
    # Older than the installed stamp, as in a checkout where `make venv` already ran: `make run` must not
    # reinstall (which would also repoint the shared .venv's editable install at the copy).
    old = stamp.stat().st_mtime - 60
    os.utime(target / "pyproject.toml", (old, old))
    return target


class Terminal:
    """The first shell: `make run`, its output collected line by line as a person would see it."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            ["make", "run"], cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:  # type: ignore[union-attr]
            self.lines.append(line)

    def wait_for(self, marker: str, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, line in enumerate(self.lines):
                if marker in line:
                    return index
            assert self.process.poll() is None, "".join(self.lines)
            time.sleep(0.2)
        raise AssertionError(f"{marker!r} not seen within {timeout} s:\n{''.join(self.lines)}")

    def ctrl_c(self) -> None:
        # The terminal's Ctrl-C reaches the whole foreground group: make and the supervisor. (make then
        # reports the interrupt and exits by the signal, as it does in a terminal.)
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=40)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.reader.join(timeout=5)


def run(command: str, cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(shlex.split(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.timeout(420)
def test_the_readme_commands_work_as_written_in_another_shell_against_make_run(tmp_path):
    commands = readme_commands()
    assert commands[0] == "make run", commands
    checkout = fresh_checkout(tmp_path / "lingua-scheduler")
    shell = {name: os.environ[name] for name in SHELL_ENV if name in os.environ}
    terminal = Terminal(checkout, {**shell, "WEB_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"})
    simulator: subprocess.Popen[str] | None = None
    started: set[int] = set()
    try:
        up = terminal.wait_for("lingua-scheduler is up", timeout=180)
        started = descendants(terminal.process.pid)
        run_file = json.loads((checkout / "var" / "run.json").read_text())
        assert run_file["url"] in "".join(terminal.lines[up:])
        password = (checkout / "var" / "admin-password").read_text()
        assert "password: " in password and (checkout / "var" / "admin-password").stat().st_mode & 0o077 == 0

        values: dict[str, str] = {}
        outputs: dict[str, str] = {}
        for command in commands[1:]:
            command = command.replace("<token>", values.get("token", "<token>")).replace("<key>", values.get("key", "<key>"))
            name = shlex.split(command)[2]
            if name == "simulate_nodes":
                # It runs until Ctrl-C: the README gives it a shell of its own.
                simulator = subprocess.Popen(
                    shlex.split(command), cwd=checkout, env=shell, text=True, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
                wait_until_nodes_ready(run_file["url"], password, count=20)
                continue
            done = run(command, checkout, shell, timeout=180)
            outputs[name] = done.stdout
            # Each command says which instance it uses, and it is the one `make run` started.
            assert "Using the instance `make run` started" in done.stderr, done.stderr
            if name == "create_node_token":
                values["token"] = re.search(r"token:\s+(\S+)", done.stdout).group(1)
            if name == "create_api_key":
                values["key"] = re.search(r"key:\s+(\S+)", done.stdout).group(1)

        assert set(outputs) == {"create_node_token", "cluster_status", "create_api_key", "submit_jobs", "doctor"}
        assert re.search(r"Instances \(1\)", outputs["cluster_status"]), outputs["cluster_status"]
        assert "20 ready" in outputs["cluster_status"], outputs["cluster_status"]
        assert re.search(r"DONE\s+200\b", outputs["submit_jobs"]), outputs["submit_jobs"]
        assert "FAIL" not in outputs["doctor"], outputs["doctor"]

        # Quiet: 200 jobs, 20 heartbeating nodes and a minute of beat ticks later, the terminal has said
        # nothing routine; the log file has the lines.
        after_up = terminal.lines[up:]
        routine = [line for line in after_up if "Sending due task" in line or "job ended" in line or '"level": "info"' in line]
        assert routine == [], routine
        assert (checkout / "var" / "log" / "scheduler.log").stat().st_size > 0
    finally:
        if simulator is not None:
            simulator.send_signal(signal.SIGINT)
            try:
                simulator.wait(timeout=20)
            except subprocess.TimeoutExpired:
                simulator.kill()
        terminal.ctrl_c()
    assert "Stopping the embedded Redis" in "".join(terminal.lines[up:]), "".join(terminal.lines)
    assert not (checkout / "var" / "run.json").exists()
    time.sleep(0.5)
    assert [pid for pid in started if alive(pid)] == []


def wait_until_nodes_ready(url: str, password: str, count: int, timeout: float = 90) -> None:
    """What the README has the user look at next: the admin's node list showing the nodes `ready`."""
    client = httpx.Client(base_url=url, follow_redirects=True, timeout=10)
    page = client.get("/admin/login/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    secret = re.search(r"password: (\S+)", password).group(1)
    client.post(
        "/admin/login/?next=/admin/",
        data={"username": "admin", "password": secret, "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{url}/admin/login/"},
    )
    deadline = time.monotonic() + timeout
    while True:
        page = client.get("/admin/nodes/node/", params={"live": "ready"}).text
        if len(re.findall(r'class="status status-ready"', page)) >= count:
            return
        assert time.monotonic() < deadline, page[-3000:]
        time.sleep(1)

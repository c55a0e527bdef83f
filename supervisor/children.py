"""The long-running children of `make run` (web server, Celery worker and beat): their commands, how they
are spawned in a process group of their own, and their restart backoff."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.config import BASE_DIR, Config
from supervisor.embedded_redis import child_preexec
from supervisor.webserver import server_command

# A child that dies after start-up is started again after 1, 2, 4 ... 30 s; one that then stays up this long
# is healthy again and its next death waits 1 s.
RESTART_BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
HEALTHY_AFTER_S = 60.0


def web_command(config: Config) -> list[str]:
    return server_command(
        config.web_server, config.web_host, config.web_port, config.max_message_bytes, processes=config.web_processes,
        ping_interval_s=config.ping_interval_s, ping_timeout_s=config.ping_timeout_s,
    )


# --quiet drops Celery's ASCII banners, which would otherwise scroll the URL summary out of sight.
def worker_command() -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "scheduler", "--quiet", "worker",
        "-l", "INFO", "--concurrency", "2", "-n", f"worker-{os.getpid()}@%h",
    ]  # fmt: skip


def beat_command() -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "scheduler", "--quiet", "beat",
        "-l", "INFO", "--schedule", str(Path("var") / "celerybeat-schedule"),
    ]  # fmt: skip


def spawn(command: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    # Own session and process group: the terminal's Ctrl-C reaches only the supervisor, which then stops the
    # children in order, and killpg reaches a child's own children (Celery's pool) too. PDEATHSIG covers the
    # supervisor itself being SIGKILLed.
    return subprocess.Popen(
        command,
        cwd=BASE_DIR,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=child_preexec(signal.SIGKILL),
    )


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def backoff(deaths: int) -> float:
    return RESTART_BACKOFF_S[min(deaths, len(RESTART_BACKOFF_S)) - 1]


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    # A long-running child is started again when it dies; a one-off step (migrate) has no command here.
    command: list[str] | None = None
    started_at: float = field(default_factory=time.monotonic)
    # Deaths since it was last healthy, and when the pending restart is due (None: running).
    deaths: int = 0
    restart_at: float | None = None

    @property
    def pgid(self) -> int:
        # start_new_session makes the child the leader of a group with its own pid as id.
        return self.process.pid

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signum)

    def group_alive(self) -> bool:
        self.process.poll()
        try:
            os.killpg(self.pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

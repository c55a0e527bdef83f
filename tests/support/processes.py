"""Real server processes for end-to-end tests: an ASGI server and Celery worker or beat.

Helpers, not fixtures. Every start must be paired with a stop even when the test fails, because a leaked
server can hang CI. Use them as context managers::

    with AsgiServer({"REDIS_URL": redis.url}) as server:
        httpx.get(f"{server.url}/healthz")

or start one in a fixture and stop it in the teardown (`yield server` inside `with`, or
`request.addfinalizer(server.kill)`). Each process runs in its own process group, so `kill()` and `stop()`
reach its children too; `start()` again after `kill()` brings it back on the same port. The kernel SIGKILLs
each process if the thread that started it ends, so a killed test run leaves nothing behind: start them from
the test's main thread, not from a worker thread that ends earlier.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Self

from supervisor.embedded_redis import child_preexec, free_port
from supervisor.webserver import DEFAULT_SERVER, SERVERS, server_command

__all__ = ["AsgiServer", "CeleryProcess", "ProcessStartError", "free_port", "server_available"]

BASE_DIR = Path(__file__).resolve().parent.parent.parent
HOST = "127.0.0.1"
_names = itertools.count(1)


class ProcessStartError(RuntimeError):
    pass


_log_dir: Path | None = None


def _logs() -> Path:
    """One temp dir per test run for all process logs, removed when the run ends."""
    global _log_dir
    if _log_dir is None:
        _log_dir = Path(tempfile.mkdtemp(prefix=f"lingua-test-logs-{os.getpid()}-"))
        atexit.register(shutil.rmtree, _log_dir, ignore_errors=True)
    return _log_dir


def server_available(server: str) -> bool:
    """Whether `server` ("daphne" or "uvicorn") is installed, for `pytest.mark.skipif`."""
    return importlib.util.find_spec(server) is not None


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


class _ManagedProcess:
    """A child in its own process group with its output in a temp log file."""

    label = "process"

    def __init__(self, env: Mapping[str, str] | None, start_timeout: float) -> None:
        self.extra_env = dict(env or {})
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_path: Path | None = None
        self._finalizer: weakref.finalize | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def wait_ready(self) -> None:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "scheduler.settings",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def start(self) -> Self:
        if self.is_running():
            raise RuntimeError(f"{self.label} is already running")
        descriptor, name = tempfile.mkstemp(
            prefix=f"{self.label.replace(' ', '-')}-", suffix=".log", dir=_logs()
        )
        self._log_path = Path(name)
        self._log = os.fdopen(descriptor, "wb")
        self.process = subprocess.Popen(
            self.command(),
            cwd=BASE_DIR,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=child_preexec(signal.SIGKILL),
        )
        # Last resort if the owner never calls stop(): kill at garbage collection or interpreter exit.
        self._finalizer = weakref.finalize(self, _kill_group, self.process)
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would."""
        if self.process is not None:
            _kill_group(self.process)
        self._close_log()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after `timeout`."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        # Also reaps group members (e.g. Celery pool processes) that outlived the leader.
        _kill_group(self.process)
        self._close_log()

    def _close_log(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_bytes().decode(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _fail(self, reason: str) -> ProcessStartError:
        return ProcessStartError(
            f"{self.label}: {reason}\n--- last lines of {self._log_path} ---\n{self.log_tail()}"
        )

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise self._fail(f"exited with code {self.process.returncode} while starting")

    def __enter__(self) -> Self:
        if not self.is_running():
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class AsgiServer(_ManagedProcess):
    """`scheduler.asgi:application` under uvicorn or daphne, started exactly as `make run` starts it
    (`supervisor.webserver.server_command`), on 127.0.0.1, ready once `/healthz` answers 200.

    `env` is merged over os.environ; NODE_MAX_MESSAGE_BYTES in it also sets the server's WebSocket limit, and
    WS_PING_INTERVAL_S / WS_PING_TIMEOUT_S its keepalive. The
    server uses the database that DATABASE_URL names, not pytest-django's test database: point it at a file
    of the test's own when the test and the server must see the same rows.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        server: Literal["daphne", "uvicorn"] | None = None,
        start_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(env, start_timeout)
        # The suite runs under the server `make run` starts; TEST_ASGI_SERVER runs it under the other one.
        server = server or os.environ.get("TEST_ASGI_SERVER") or DEFAULT_SERVER  # type: ignore[assignment]
        if server not in SERVERS:
            raise ValueError(f"unknown ASGI server {server!r}")
        if not server_available(server):
            raise ProcessStartError(f"{server} is not installed in {sys.prefix}")
        self.server = server
        self.label = f"{server} server"
        self.port = port or free_port()
        self.extra_args = list(extra_args)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    def command(self) -> list[str]:
        max_message = self.extra_env.get("NODE_MAX_MESSAGE_BYTES")
        # The keepalive as `make run` reads it (supervisor/config.py), so a test can shorten it.
        ping = {
            name: int(self.extra_env[variable])
            for name, variable in (("ping_interval_s", "WS_PING_INTERVAL_S"), ("ping_timeout_s", "WS_PING_TIMEOUT_S"))
            if self.extra_env.get(variable)
        }
        return server_command(
            self.server, HOST, self.port, int(max_message) if max_message else None, self.extra_args, **ping
        )

    def wait_ready(self) -> None:
        url = f"{self.url}/healthz"
        deadline = time.monotonic() + self.start_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as error:
                last = f"HTTP {error.code}"
            except OSError as error:
                last = f"no answer ({error})"
            time.sleep(0.05)
        raise self._fail(f"{url} did not answer 200 within {self.start_timeout:g} s (last: {last})")


class CeleryProcess(_ManagedProcess):
    """A Celery worker or beat for the `scheduler` app, ready once its log shows it started.

    The worker uses the solo pool by default (one process, quick to start and to kill); pass
    `extra_args=["--pool", "prefork", "--concurrency", "2"]` to test the real pool. Beat keeps its
    schedule file beside the logs, not in var/, and `start()` after `kill()` reuses it.
    """

    READY_PATTERNS = {
        "worker": re.compile(r"@\S+ ready\."),
        "beat": re.compile(r"beat: Starting"),
    }

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        kind: Literal["worker", "beat"] = "worker",
        start_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(env, start_timeout)
        if kind not in self.READY_PATTERNS:
            raise ValueError(f"kind must be 'worker' or 'beat', not {kind!r}")
        self.kind = kind
        self.label = f"celery {kind}"
        self.extra_args = list(extra_args)
        self.node_name = f"test-{os.getpid()}-{next(_names)}@%h"

    def command(self) -> list[str]:
        base = [sys.executable, "-m", "celery", "-A", "scheduler", self.kind, "-l", "INFO"]
        if self.kind == "worker":
            pool = [] if "--pool" in self.extra_args or "-P" in self.extra_args else ["--pool", "solo"]
            return [*base, "-n", self.node_name, *pool, *self.extra_args]
        schedule = _logs() / f"{self.node_name.split('@')[0]}-beat-schedule"
        return [*base, "--schedule", str(schedule), *self.extra_args]

    def wait_ready(self) -> None:
        pattern = self.READY_PATTERNS[self.kind]
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if pattern.search(self.log_text()):
                return
            time.sleep(0.1)
        raise self._fail(f"no line matching {pattern.pattern!r} in its log within {self.start_timeout:g} s")

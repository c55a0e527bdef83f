"""What `make run` (supervisor/runner.py) reads from the environment, and where it keeps its files.

The supervisor runs before Django is configured, so it reads the environment itself (through
`scheduler/env.py`, as the settings do); names and defaults here must match `scheduler/settings.py`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from scheduler.env import EnvError, envbool, envchoice, envint, raw
from supervisor.webserver import DEFAULT_SERVER, PING_INTERVAL_S, PING_TIMEOUT_S, SERVERS

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
SECRET_KEY_PATH = VAR_DIR / "secret_key"
LOG_PATH = VAR_DIR / "log" / "scheduler.log"
ADMIN_PASSWORD_PATH = VAR_DIR / "admin-password"


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

"""Private file modes for what the scheduler writes beside itself: the SQLite database (node and API-key
records, password hashes) must not be readable by other users of the machine, whatever the umask was when
it was created. The `make run` supervisor also sets umask 077 for itself and its children."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from django.conf import settings

_done: set[str] = set()


def make_sqlite_private(sender: Any, connection: Any, **kwargs: Any) -> None:
    """`connection_created` receiver: chmod the SQLite file and its WAL companions once per process."""
    if connection.vendor != "sqlite":
        return
    name = str(connection.settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or name.startswith("file:") or name in _done:
        return
    _done.add(name)
    for path in (Path(name), Path(f"{name}-wal"), Path(f"{name}-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if path.stat().st_mode & 0o777 != settings.PRIVATE_FILE_MODE:
                os.chmod(path, settings.PRIVATE_FILE_MODE)

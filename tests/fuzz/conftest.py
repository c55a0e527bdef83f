from __future__ import annotations

import json
from pathlib import Path

import pytest

from access.models import ApiKey, Scope
from nodes.models import NodeToken


@pytest.fixture
def api_key(transactional_db) -> str:
    return ApiKey.issue("fuzz", list(Scope))[1]


@pytest.fixture
def node_token(transactional_db) -> str:
    return NodeToken.issue("fuzz")[1]


def error_lines(log_text: str) -> list[str]:
    """JSON log lines at error level or above: a bug the server caught still leaves one of these."""
    found = []
    for line in log_text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if "Traceback" in line:
                found.append(line)
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
            found.append(line[:500])
    return found


def read_log(path: Path | None) -> str:
    return path.read_text(errors="replace") if path is not None and path.exists() else ""

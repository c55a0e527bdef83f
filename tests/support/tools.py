"""External programs some tests drive (promtool, Chromium), found where `ops/tools/install-test-tools` puts
them or on PATH. A missing tool skips its test with the reason, except under REQUIRE_TEST_TOOLS=1 (CI), where
it fails: CI never counts a test that did not run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

TOOLS_BIN = Path(__file__).resolve().parents[2] / "var" / "tools" / "bin"


def require_tool(name: str, env_var: str | None = None) -> str:
    candidates = [os.environ.get(env_var, "")] if env_var else []
    candidates += [str(TOOLS_BIN / name), shutil.which(name) or ""]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    message = f"{name} is not installed: run ops/tools/install-test-tools"
    if os.environ.get("REQUIRE_TEST_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)

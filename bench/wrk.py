"""A lean REST load generator: `wrk` (Debian's package, C with LuaJIT) driving the same calls as the Python
submitters (`bench/wrk/jobs.lua`: POST /api/v1/jobs?wait, then GET long-polls until the job ends).

The Python submitters cost about 1.5-3 ms of CPU per job themselves, as much as the server under test, and
on two cores that caps what a run can show; wrk costs a fraction of that, so the server, not the client,
is what saturates. wrk reports whole-run request latencies (a POST answered DONE within its wait is the
job's end-to-end latency), so the benchmark takes throughput for its window from the server's own
`ended:DONE` counter in Redis instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent / "wrk" / "jobs.lua"
RESULT_PREFIX = "WRK_RESULT "


def binary() -> str | None:
    return shutil.which("wrk")


def require() -> str:
    found = binary()
    if found is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk (Debian), or run with --loadgen python")
    return found


@dataclass(frozen=True)
class WrkConfig:
    url: str
    api_key: str
    body: dict[str, Any]
    connections: int
    duration_s: float
    threads: int = 1
    wait_s: int = 10


class Wrk:
    """wrk running for `duration_s` in a process of its own; `finish()` waits for it and returns its counts."""

    def __init__(self, config: WrkConfig) -> None:
        self.config = config
        self.workdir = Path(tempfile.mkdtemp(prefix="wrk-"))
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> Wrk:
        config = self.config
        body_file = self.workdir / "body.json"
        body_file.write_text(json.dumps(config.body))
        env = {**os.environ, "WRK_API_KEY": config.api_key, "WRK_BODY_FILE": str(body_file), "WRK_WAIT_S": str(config.wait_s)}
        self.process = subprocess.Popen(
            [require(), "-t", str(config.threads), "-c", str(config.connections), "-d", f"{config.duration_s:.0f}s",
             "--timeout", f"{config.wait_s + 5}s", "-s", str(SCRIPT), config.url],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def finish(self) -> dict[str, Any]:
        assert self.process is not None
        output, _ = self.process.communicate(timeout=self.config.duration_s + self.config.wait_s + 30)
        line = next((line for line in output.splitlines() if line.startswith(RESULT_PREFIX)), None)
        if self.process.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed (exit {self.process.returncode}): {output[-800:]}")
        return json.loads(line.removeprefix(RESULT_PREFIX))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

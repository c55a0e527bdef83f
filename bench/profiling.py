"""Sampling profile of a running server with py-spy, and a plain-text digest of it.

py-spy attaches to the process from outside (no change to the code under test; needs root or ptrace
rights) and samples its stacks; `--nonblocking` keeps it from pausing the process at each sample, so the
profile costs the server almost nothing. Samples are written in the collapsed ("raw") format, one line per
distinct stack with its count, which any flame-graph tool reads (speedscope, flamegraph.pl), and which
`digest` folds into the largest costs: inclusive share per function and per package, self share per
function. Idle samples (the event loop waiting in epoll) are left out by py-spy, so shares are of the time
the server was busy.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

RATE_HZ = 200
PROJECT = str(Path(__file__).resolve().parent.parent)
FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
SITE_PACKAGE = re.compile(r"site-packages/([^/]+)")
STDLIB_MODULE = re.compile(r"lib/python3\.\d+/([^/]+)")
# Frames every busy stack passes through (entry points, the event loop, thread bootstrap): they would fill
# the inclusive list without saying where the time goes.
PLUMBING = re.compile(
    r"^(_run_module_as_main|_run_code|<module>|main|run|asyncio_run|Runner\.run|Command\.\w+|Context\.invoke|"
    r"Server\.run|CommandLineInterface\.\w+|AsyncioSelectorReactor\.run|BaseEventLoop\.(run_forever|_run_once)|"
    r"Handle\._run|Thread\.(run|_bootstrap|_bootstrap_inner))$"
)


def py_spy() -> str | None:
    found = Path(sys.executable).parent / "py-spy"
    return str(found) if found.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, pid: int, duration_s: float, output: Path) -> None:
        self.pid = pid
        self.duration_s = duration_s
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = py_spy()
        if binary is None:
            raise RuntimeError("py-spy is not installed: pip install py-spy")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "record", "--pid", str(self.pid), "--duration", str(max(1, round(self.duration_s))),
             "--rate", str(RATE_HZ), "--format", "raw", "--nonblocking", "--full-filenames", "--output", str(self.output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def finish(self) -> dict[str, Any]:
        assert self.process is not None
        _, stderr = self.process.communicate(timeout=self.duration_s + 60)
        if self.process.returncode != 0 or not self.output.exists():
            return {"error": stderr.decode(errors="replace")[-500:]}
        return {"file": str(self.output), **digest(self.output.read_text(), self.duration_s)}


def _frames(stack: str) -> list[tuple[str, str]]:
    frames = []
    for raw in stack.split(";"):
        match = FRAME.match(raw.strip())
        if match:
            frames.append((match["function"], match["file"]))
    return frames


def _short(function: str, file: str) -> str:
    for marker in ("site-packages/", f"{PROJECT}/", "lib/python3.11/", "lib/python3.12/"):
        file = file.split(marker, 1)[-1]
    return f"{function} ({file})"


def _package(file: str) -> str:
    """The top-level package a frame's file belongs to; project apps are prefixed "project:"."""
    if file.startswith(f"{PROJECT}/") and "/.venv/" not in file:
        return "project:" + file.removeprefix(f"{PROJECT}/").split("/", 1)[0]
    if match := SITE_PACKAGE.search(file):
        return match[1].removesuffix(".py")
    if match := STDLIB_MODULE.search(file):
        return "stdlib:" + match[1].removesuffix(".py")
    return file


# The layers a job passes through, by the file of a frame (first match wins). A sample is charged to the
# layer of its innermost frame that belongs to one, skipping the transparent frames (the event loop, streams,
# the rest of the standard library) that every layer calls into: a socket write under redis-py is redis-py's
# cost, `json.dumps` under ninja is JSON's. What is left is "other".
LAYERS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("JSON", r"/json/|site-packages/(orjson|ujson)"),
        ("logging", r"/logging/|core/logs\.py"),
        ("metrics", r"site-packages/prometheus_client/|core/metrics\.py|django_prometheus"),
        ("audit", r"core/audit\.py|jobs/audit\.py|nodes/audit\.py"),
        ("auth", r"access/auth\.py|core/credentials\.py"),
        ("pydantic", r"site-packages/pydantic"),
        ("ninja", r"site-packages/ninja/"),
        ("django", r"site-packages/django/"),
        ("thread hops", r"site-packages/asgiref/|/concurrent/futures/|/threading\.py"),
        ("redis-py", r"site-packages/(redis|hiredis)/"),
        ("channels", r"site-packages/(channels|channels_redis)/"),
        ("server (uvicorn, websockets)", r"site-packages/(uvicorn|websockets|httptools|daphne|twisted|autobahn)/"),
        ("project code", re.escape(PROJECT) + r"/(?!\.venv/)"),
    )
)


EVENT_LOOP = re.compile(r"^(Runner\.run|BaseEventLoop\.(run_forever|_run_once)|Handle\._run|Thread\.(run|_bootstrap_inner))$")


def _layer(frames: list[tuple[str, str]]) -> str:
    for function, file in reversed(frames):
        if EVENT_LOOP.match(function):
            break  # reached the loop (or thread) that called the work: nothing layered below it
        for name, pattern in LAYERS:
            if pattern.search(file):
                return name
    return "other (event loop, streams, stdlib)"


def digest(collapsed: str, duration_s: float, top: int = 25) -> dict[str, Any]:
    """Busy share of the window, the top functions (inclusive and self) and packages by samples, and every
    sample charged to one layer (`LAYERS`)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = _frames(stack)
        if not frames:
            continue
        total += count
        for name in {_short(function, file) for function, file in frames if not PLUMBING.match(function)}:
            inclusive[name] += count
        for package in {_package(file) for _, file in frames}:
            packages[package] += count
        own[_short(*frames[-1])] += count
        layers[_layer(frames)] += count

    def shares(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)] if total else []

    return {
        "samples": total,
        "busy_share": round(total / (RATE_HZ * duration_s), 3),
        "inclusive_pct": shares(inclusive),
        "self_pct": shares(own),
        "package_inclusive_pct": shares(packages),
        "layer_self_pct": shares(layers),
    }

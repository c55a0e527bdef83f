"""Applies the fault schedule to the stack, from the main thread (the thread that starts a process must
outlive it), and writes one `fault` line per fault to the history: when it began, when the process was
continued or started again, and which process or node it hit."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import redis

from chaos.client import JsonLines
from chaos.scenario import Fault
from chaos.stack import Stack
from core.redis import Keys
from tests.support.processes import ProcessStartError


class FaultRunner:
    def __init__(self, stack: Stack, log: JsonLines, prefix: str) -> None:
        self.stack = stack
        self.log = log
        self.keys = Keys(prefix)
        self.node_turn = 0

    def run(self, schedule: list[Fault], started: float, out: Callable[[str], None] = print) -> None:
        for fault in schedule:
            delay = started + fault.at_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            out(f"  t={time.monotonic() - started:6.1f}s  {fault.label} for {fault.hold_s:g} s")
            self.apply(fault)

    def apply(self, fault: Fault) -> None:
        begin = time.time()
        record: dict[str, object] = {"kind": fault.kind, "target": fault.target, "start": begin, "hold_s": fault.hold_s}
        try:
            if fault.target == "redis":
                self._redis(fault, record)
            elif fault.target == "leader":
                self._leader(fault, record)
            elif fault.target.startswith("web-"):
                self._web(fault, record)
            elif fault.target.startswith("node:"):
                self._nodes(fault, record)
            else:
                raise ValueError(f"unknown fault target {fault.target!r}")
        except ProcessStartError as exc:
            record["error"] = str(exc).splitlines()[0]
        record["end"] = time.time()
        self.log.write("fault", **record)

    def _redis(self, fault: Fault, record: dict[str, object]) -> None:
        self.stack.env.redis.kill()
        time.sleep(fault.hold_s)
        record["restarted"] = time.time()
        self.stack.restart_redis(keep_data=fault.kind != "wipe")
        record["ready"] = time.time()

    def _leader(self, fault: Fault, record: dict[str, object]) -> None:
        client = redis.Redis.from_url(self.stack.env.redis.url, decode_responses=True, socket_timeout=1.0)
        lease = client.get(self.keys.pool_lease) or ""
        client.close()
        worker = self.stack.worker_of(lease.rpartition("|")[0])
        if worker is None:
            record["skipped"] = f"no worker holds the lease ({lease!r})"
            return
        record["holder"] = lease
        record["pid"] = worker.pid
        record["log"] = str(worker.log_path)
        self._hit(fault, record, worker.pid, worker.kill, worker.start)

    def _web(self, fault: Fault, record: dict[str, object]) -> None:
        web = self.stack.webs[int(fault.target.split("-")[1]) - 1]
        record["pid"] = web.pid
        record["url"] = web.url
        record["log"] = str(web.log_path)
        self._hit(fault, record, web.pid, web.kill, web.start)

    def _hit(self, fault: Fault, record: dict[str, object], pid: int | None, kill: Callable[[], None], start: Callable[[], object]) -> None:
        assert pid is not None
        if fault.kind == "stop":
            os.killpg(pid, signal.SIGSTOP)
            time.sleep(fault.hold_s)
            record["restarted"] = time.time()
            os.killpg(pid, signal.SIGCONT)
            return
        kill()
        self.keep_log(record)
        time.sleep(fault.hold_s)
        record["restarted"] = time.time()
        start()
        record["ready"] = time.time()

    def keep_log(self, record: dict[str, object]) -> None:
        """A restarted process logs to a new file: keep the killed one's log with the run's files."""
        source = Path(str(record.get("log") or ""))
        if source.is_file():
            target = self.stack.run_dir / "logs" / f"{source.stem}-killed-{record['pid']}.log"
            shutil.copyfile(source, target)
            record["log"] = str(target)

    def _nodes(self, fault: Fault, record: dict[str, object]) -> None:
        profile, _, count = fault.target.removeprefix("node:").partition("*")
        candidates = [node for node in self.stack.nodes if node.profile == profile and node.is_running()]
        if not candidates:
            record["skipped"] = f"no running {profile} node"
            return
        chosen = [candidates[(self.node_turn + i) % len(candidates)] for i in range(min(int(count or 1), len(candidates)))]
        self.node_turn += 1
        for node in chosen:
            node.node_id = last_node_id(self.stack.run_dir / "nodes.jsonl", node.name) or node.node_id
        record["nodes"] = {node.name: node.node_id for node in chosen}
        if fault.kind == "stop":
            for node in chosen:
                node.signal(signal.SIGSTOP)
            time.sleep(fault.hold_s)
            record["restarted"] = time.time()
            for node in chosen:
                node.signal(signal.SIGCONT)
            return
        for node in chosen:
            node.kill()
        time.sleep(fault.hold_s)
        record["restarted"] = time.time()
        for node in chosen:
            node.start()


def last_node_id(history: Path, proc: str) -> str | None:
    """The id the node process `proc` last registered with, from the nodes' history."""
    node_id = None
    with open(history, encoding="utf-8") as lines:
        for line in lines:
            if f'"proc":"{proc}"' in line and '"ev":"registered"' in line:
                node_id = json.loads(line).get("node")
    return node_id


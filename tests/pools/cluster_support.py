"""A real cluster for the pool end-to-end tests: one Redis of the test's own, two web instances (daphne), two
Celery workers (each runs the pool leader thread) and Celery beat, all sharing the test's database.

Timings are scaled down through environment variables given to every process (and mirrored in the test
process's settings); each test's docstring states the production values they stand for:

    lease TTL 15 s -> 3 s, renew 2 s -> 0.3 s, give up 10 s -> 2 s, rebuild 10 s -> 1 s

Test modules import the fixtures they use (`from tests.pools.cluster_support import cluster, redis_url`):
`redis_url` replaces the session-wide autouse fixture of `tests/conftest.py`, so the test process, the
servers and the workers all talk to a Redis that only this test uses (and may flush).

Every process is killed in the fixture's teardown, also when the test fails or the start itself fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import redis
from channels.db import database_sync_to_async
from channels.layers import channel_layers

from core.redis import reset_clients
from nodes.models import NodeToken
from nodes.simulator import SimulatedNode, SimulatedNodeConfig
from supervisor.embedded_redis import RedisProcess
from tests.conftest import FAST_NODE_TIMINGS, point_at_redis
from tests.factories import heartbeat_message, language_capabilities
from tests.support.processes import AsgiServer, CeleryProcess
from tests.support.wire import Wire

TTL_S = 3.0
RENEW_S = 0.3
GIVE_UP_S = 2.0
REBUILD_S = 1.0
POOL_TIMINGS = {
    "POOL_LEASE_TTL_S": str(TTL_S),
    "POOL_LEASE_RENEW_S": str(RENEW_S),
    "POOL_LEADER_GIVE_UP_S": str(GIVE_UP_S),
    "POOL_REBUILD_INTERVAL_S": str(REBUILD_S),
}
# Nodes heartbeat as often as the servers expect with FAST_NODE_TIMINGS (timeout 1.5 s).
NODE_HEARTBEAT_S = float(FAST_NODE_TIMINGS["NODE_HEARTBEAT_INTERVAL_S"])

PREFIX = "sched"
CONFIG_KEY = f"{PREFIX}:{{pools}}:config"
HISTORY_KEY = f"{PREFIX}:{{pools}}:history"
LEASE_KEY = f"{PREFIX}:{{pools}}:leader"
EPOCH_KEY = f"{PREFIX}:{{pools}}:epoch"


def members_key(pool: str) -> str:
    return f"{PREFIX}:pool:{{{pool}}}:members"


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture
def cluster_redis() -> Iterator[RedisProcess]:
    with RedisProcess() as server:
        yield server


@pytest.fixture
def redis_url(cluster_redis: RedisProcess, settings) -> Iterator[str]:
    """Overrides the session-wide autouse fixture: this test's own Redis, and the shortened timings."""
    point_at_redis(settings, cluster_redis.url)
    for name, value in {**FAST_NODE_TIMINGS, **POOL_TIMINGS}.items():
        setattr(settings, name, float(value))
    yield cluster_redis.url
    reset_clients()
    channel_layers.backends.clear()


@pytest.fixture
def pool_timings() -> dict[str, str]:
    """The pool timings every process gets; a module overrides this fixture to change them."""
    return dict(POOL_TIMINGS)


@pytest.fixture
def cluster(server_env: dict[str, str], pool_timings: dict[str, str], settings) -> Iterator[Cluster]:
    for name, value in pool_timings.items():
        setattr(settings, name, float(value))
    running = Cluster({**server_env, **pool_timings})
    try:
        running.start()
        yield running
    finally:
        running.kill_all()


@pytest.fixture
def node_token(transactional_db) -> str:
    return NodeToken.issue("cluster test nodes")[1]


# --- the cluster --------------------------------------------------------------------------------------------


@dataclass
class LeaderLogEvent:
    at: float  # wall clock, seconds since the epoch
    worker: str
    kind: str  # "became" | "stopped"
    reason: str


class Cluster:
    WORKERS = ("a", "b")

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.redis = redis.Redis.from_url(self.env["REDIS_URL"], decode_responses=True, socket_timeout=5)
        self.webs = [AsgiServer({**self.env, "INSTANCE_ID": f"web-{name}"}) for name in ("a", "b")]
        self.workers: dict[str, CeleryProcess] = {}
        for name in self.WORKERS:
            worker = CeleryProcess({**self.env, "INSTANCE_ID": f"worker-{name}"}, kind="worker")
            worker.node_name = f"leader-{name}@cluster"  # the holder is "<hostname>/<INSTANCE_ID>"
            self.workers[name] = worker
        self.beat = CeleryProcess({**self.env, "INSTANCE_ID": "beat"}, kind="beat")

    @property
    def processes(self) -> list[Any]:
        return [*self.webs, *self.workers.values(), self.beat]

    def start(self) -> None:
        """Spawn all processes at once (from this thread: they die with it), then wait for each."""
        for process in self.processes:
            process.wait_ready = lambda: None  # type: ignore[method-assign]
            try:
                process.start()
            finally:
                del process.wait_ready
        for process in self.processes:
            try:
                process.wait_ready()
            except BaseException:
                self.kill_all()
                raise

    def kill_all(self) -> None:
        for process in self.processes:
            if process.pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGCONT)  # a stopped process group dies only once resumed
            process.kill()
        self.redis.close()

    # --- workers and the lease --------------------------------------------------------------------------

    def holder_of(self, name: str) -> str:
        return f"leader-{name}@cluster/worker-{name}"

    def worker_name(self, holder: str) -> str:
        for name in self.workers:
            if holder == self.holder_of(name):
                return name
        raise AssertionError(f"holder {holder!r} is none of the workers")

    def lease(self) -> tuple[str, int] | None:
        value = self.redis.get(LEASE_KEY)
        if not value:
            return None
        holder, _, epoch = value.rpartition("|")
        return holder, int(epoch)

    async def leader(self, timeout: float = 15.0, other_than: str | None = None) -> tuple[str, int]:
        """The lease's (holder, epoch), waiting for one (held by someone other than `other_than`)."""
        found: list[tuple[str, int]] = []

        def held() -> bool:
            lease = self.lease()
            if lease is not None and lease[0] != other_than:
                found.append(lease)
                return True
            return False

        await async_wait_until(
            held, timeout, f"a leader{' other than ' + other_than if other_than else ''}", cluster=self
        )
        return found[-1]

    def signal_worker(self, name: str, signum: int) -> None:
        pid = self.workers[name].pid
        assert pid is not None
        os.killpg(pid, signum)

    def leader_log(self, name: str) -> list[LeaderLogEvent]:
        """What a worker's own log says about its leadership, in order."""
        events = []
        for line in self.workers[name].log_text().splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            message = record.get("message", "")
            kind = (
                "became"
                if message == "became pool leader"
                else "stopped"
                if message.startswith("stopped acting")
                else ""
            )
            if kind:
                at = datetime.fromisoformat(record["timestamp"]).timestamp()
                events.append(LeaderLogEvent(at, name, kind, record.get("reason", "")))
        return events

    def log_lines(self, name: str, text: str) -> list[dict[str, Any]]:
        found = []
        for line in self.workers[name].log_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                record = json.loads(line)
                if isinstance(record, dict) and text in record.get("message", ""):
                    found.append(record)
        return found

    def logs(self, lines: int = 15) -> str:
        return "\n".join(
            f"--- {p.label} {getattr(p, 'node_name', '')} ---\n{p.log_tail(lines)}" for p in self.processes
        )

    # --- the configuration ---------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The configuration hash with its JSON document parsed ({} when there is none)."""
        fields = self.redis.hgetall(CONFIG_KEY)
        if not fields.get("json"):
            return {
                "version": 0,
                "epoch": 0,
                "pools": [],
                "stale_refusals": int(fields.get("stale_refusals") or 0),
            }
        document = json.loads(fields["json"])
        document["stale_refusals"] = int(fields.get("stale_refusals") or 0)
        return document

    def pools(self) -> dict[str, int]:
        return {pool["name"]: pool["pool_id"] for pool in self.config()["pools"]}

    def history(self) -> list[dict[str, Any]]:
        """The history list oldest first (the scripts LPUSH)."""
        return [json.loads(entry) for entry in reversed(self.redis.lrange(HISTORY_KEY, 0, -1))]

    def members(self, pool: str) -> set[str]:
        return self.redis.smembers(members_key(pool))


async def async_wait_until(
    predicate, timeout: float, what: str, interval: float = 0.02, cluster: Cluster | None = None
) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(
                f"{what}: not within {timeout} s" + (f"\n{cluster.logs()}" if cluster else "")
            )
        await asyncio.sleep(interval)
    return time.monotonic() - started


# --- invariants -------------------------------------------------------------------------------------------


def epoch_regressions(entries: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Pairs (earlier, later) of writes in version order where the later one carries a lower epoch: after
    the first write of epoch N, no write of an epoch below N may follow."""
    ordered = sorted(entries, key=lambda entry: entry["version"])
    regressions = []
    highest: dict[str, Any] | None = None
    for entry in ordered:
        if highest is not None and entry["epoch"] < highest["epoch"]:
            regressions.append((highest, entry))
        if highest is None or entry["epoch"] > highest["epoch"]:
            highest = entry
    return regressions


def overlapping_leaders(events: list[LeaderLogEvent], ends: Mapping[str, float]) -> list[str]:
    """Moments where two workers both believed they were leader, from their own logs. A worker's term runs
    from its "became" line to its next "stopped" line, or to `ends[worker]` (when it was killed) or now."""
    terms: list[tuple[float, float, str]] = []
    open_terms: dict[str, float] = {}
    for event in sorted(events, key=lambda e: e.at):
        if event.kind == "became":
            open_terms[event.worker] = event.at
        elif event.worker in open_terms:
            terms.append((open_terms.pop(event.worker), event.at, event.worker))
    for worker, began in open_terms.items():
        terms.append((began, ends.get(worker, time.time()), worker))
    problems = []
    for i, (start_a, end_a, worker_a) in enumerate(terms):
        for start_b, end_b, worker_b in terms[i + 1 :]:
            if worker_a != worker_b and start_a < end_b and start_b < end_a:
                problems.append(
                    f"{worker_a} [{start_a:.3f}, {end_a:.3f}] overlaps {worker_b} [{start_b:.3f}, {end_b:.3f}]"
                )
    return problems


@dataclass
class Sample:
    at: float  # monotonic
    wall: float
    lease: str | None
    epoch_counter: int | None
    config_epoch: int | None
    version: int | None


class LeaseSampler:
    """Reads the lease, the epoch counter and the configuration's version and epoch every `interval` in a
    thread of its own (with its own connection), until stopped."""

    def __init__(self, url: str, interval: float = 0.05) -> None:
        self.client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2)
        self.interval = interval
        self.samples: list[Sample] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self.client.pipeline(transaction=True) as pipe:
                    pipe.get(LEASE_KEY)
                    pipe.get(EPOCH_KEY)
                    pipe.hmget(CONFIG_KEY, ["epoch", "version"])
                    lease, counter, (config_epoch, version) = pipe.execute()
                self.samples.append(
                    Sample(
                        time.monotonic(), time.time(), lease,
                        int(counter) if counter else None,
                        int(config_epoch) if config_epoch else None,
                        int(version) if version else None,
                    )
                )  # fmt: skip
            except redis.RedisError:
                self.errors += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> LeaseSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.close()

    def holders(self) -> list[str | None]:
        return [sample.lease.rpartition("|")[0] if sample.lease else None for sample in self.samples]


# --- nodes --------------------------------------------------------------------------------------------------


def simulated_node(web: AsgiServer, token: str, languages: list[str], name: str) -> SimulatedNode:
    """A node speaking the real client's protocol, heartbeating as often as the servers expect."""
    return SimulatedNode(
        SimulatedNodeConfig(
            url=f"{web.ws_url}/ws/node", token=token, languages=list(languages), name=name,
            heartbeat_interval_s=NODE_HEARTBEAT_S, reconnect_initial_s=0.2, reconnect_max_s=1.0,
        )
    )  # fmt: skip


@contextlib.asynccontextmanager
async def running_nodes(nodes: list[SimulatedNode], timeout: float = 10.0):
    try:
        for node in nodes:
            await node.start()
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(node.registered.wait() for node in nodes))
        yield nodes
    finally:
        await asyncio.gather(*(node.stop() for node in nodes), return_exceptions=True)


class WireNode:
    """A raw node socket that registers when the test says so and then heartbeats in the background."""

    def __init__(self, wire: Wire, languages: list[str]) -> None:
        self.wire = wire
        self.languages = languages
        self.node_id: str | None = None
        self._beats: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, web: AsgiServer, token: str, languages: list[str]) -> WireNode:
        return cls(await Wire.connect(web.ws_url, token), languages)

    async def register(self) -> str:
        ack = await self.wire.register(language_capabilities=language_capabilities(self.languages))
        self.node_id = ack["node_id"]
        await self.beat()
        self._beats = asyncio.create_task(self._beat_forever())
        return self.node_id

    async def beat(self) -> None:
        assert self.node_id is not None
        await self.wire.send(
            heartbeat_message(self.node_id, language_capabilities=language_capabilities(self.languages))
        )

    async def _beat_forever(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(NODE_HEARTBEAT_S)
                await self.beat()

    async def close(self) -> None:
        if self._beats is not None:
            self._beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beats
        with contextlib.suppress(Exception):
            await self.wire.close()


async def drain_audit(cluster: Cluster, timeout: float = 5.0) -> None:
    """Write the audit stream to the database here (`core.audit.drain()`) until the mirror holds the
    configuration's current version. The workers' own audit writer may hold a batch it read but has not
    committed yet (entries pending for another consumer are not ours to take), so one drain is not enough."""
    from core import audit
    from pools.models import PoolConfigVersion

    deadline = time.monotonic() + timeout
    while True:
        await database_sync_to_async(audit.drain)()
        highest = await database_sync_to_async(PoolConfigVersion.highest_version)()
        if highest >= int(cluster.config()["version"]):
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the audit mirror stays at v{highest}, Redis is at v{cluster.config()['version']}"
            )
        await asyncio.sleep(0.1)

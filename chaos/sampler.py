"""Reads Redis every half second while the run lasts: each node's declared capacity against its live
reservations and running attempts (I3), and the leader lease and fencing epoch (I5). A sample that finds
Redis down is recorded as such; the run goes on."""

from __future__ import annotations

import threading

import redis

from chaos.client import JsonLines
from core.redis import Keys

INTERVAL_S = 0.5


class Sampler:
    def __init__(self, url: str, prefix: str, log: JsonLines) -> None:
        self.client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.keys = Keys(prefix)
        self.log = log
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._main, name="chaos-sampler", daemon=True)
        self.samples = 0

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(5)

    def _main(self) -> None:
        while not self.stop_event.wait(INTERVAL_S):
            try:
                self.sample()
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self.log.write("sample_failed", error=type(exc).__name__)

    def sample(self) -> None:
        k = self.keys
        seconds, micros = self.client.time()
        now_ms = seconds * 1000 + micros // 1000
        node_ids = sorted(self.client.smembers(k.nodes_all))
        with self.client.pipeline(transaction=False) as pipe:
            for node_id in node_ids:
                pipe.hget(k.node_cap(node_id), "max")
                pipe.zcount(k.node_reservations(node_id), f"({now_ms}", "+inf")
                pipe.zcount(k.node_running(node_id), f"({now_ms}", "+inf")
                pipe.hget(k.node_meta(node_id), "status")
            pipe.get(k.pool_epoch)
            pipe.get(k.pool_lease)
            pipe.hget(k.pool_config, "epoch")
            # The audit backlog and how long the writer's lock still has: a writer that died holding the
            # lock shows as a backlog that grows until the lock expires.
            streams = k.audit_streams
            for stream in streams:
                pipe.xlen(stream)
            pipe.ttl(k.lock("core.write_audit"))
            replies = pipe.execute()
        nodes = {}
        for index, node_id in enumerate(node_ids):
            maximum, reserved, running, status = replies[index * 4 : index * 4 + 4]
            nodes[node_id] = [int(maximum) if maximum else None, reserved, running, status]
        tail = replies[len(node_ids) * 4 :]
        epoch, lease, config_epoch = tail[:3]
        audit_backlog = sum(tail[3 : 3 + len(streams)])
        audit_lock_ttl = tail[-1]
        self.samples += 1
        self.log.write(
            "sample", now_ms=now_ms, nodes=nodes, epoch=_int(epoch), lease=lease, config_epoch=_int(config_epoch),
            audit_backlog=audit_backlog, audit_lock_ttl=audit_lock_ttl,
        )  # fmt: skip


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None

"""What the checker needs from the stack once the load is over, read while the stack still runs and saved
as `final.json`, so `python -m chaos check <run dir>` can judge a run again without its processes:

- every accepted job as the API shows it now (the end a client would read today);
- the database mirror of those jobs and their attempts, once the audit stream is empty;
- Redis at rest: every node's slot sets, the pending queue, the deadline index and any job still live.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from core.redis import Keys

LIVE_STATES = ("NEW", "SELECTING", "RESERVED", "DISPATCHED", "ACKED")


def wait_for_rest(client: redis.Redis, keys: Keys, timeout_s: float) -> float:
    """Seconds until no node holds a live slot and no job waits or runs (or `timeout_s`, whichever first)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if not _busy(client, keys):
                break
        except (redis.ConnectionError, redis.TimeoutError):
            pass
        time.sleep(0.5)
    return time.monotonic() - started


def _busy(client: redis.Redis, keys: Keys) -> bool:
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    for node_id in client.smembers(keys.nodes_all):
        if client.zcount(keys.node_reservations(node_id), f"({now_ms}", "+inf") or client.zcount(
            keys.node_running(node_id), f"({now_ms}", "+inf"
        ):
            return True
    if client.zcard(keys.jobs_pending):
        return True
    return any(client.zcard(index) for index in keys.job_deadline_indexes)


def redis_at_rest(client: redis.Redis, keys: Keys) -> dict[str, Any]:
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    nodes = {}
    for node_id in sorted(client.smembers(keys.nodes_all)):
        resv = client.zrange(keys.node_reservations(node_id), 0, -1, withscores=True)
        run = client.zrange(keys.node_running(node_id), 0, -1, withscores=True)
        nodes[node_id] = {
            "live": [member for member, score in [*resv, *run] if score > now_ms],
            "expired": len([1 for _, score in [*resv, *run] if score <= now_ms]),
            "status": client.hget(keys.node_meta(node_id), "status"),
        }
    live_jobs = []
    # A job's hash is `<prefix>:job:{j<shard>}:<job id>`; its audio and partials add a suffix.
    for key in client.scan_iter(match=f"{keys.prefix}:job:{{j*}}:*", count=1000):
        if key.count(":") != keys.prefix.count(":") + 3 or client.type(key) != "hash":
            continue
        if client.hget(key, "state") in LIVE_STATES:
            live_jobs.append(key)
    return {
        "now_ms": now_ms,
        "nodes": nodes,
        "pending": client.zcard(keys.jobs_pending),
        "deadlines": [member for index in keys.job_deadline_indexes for member in client.zrange(index, 0, -1)],
        "live_jobs": live_jobs,
        "audit_backlog": audit_backlog(client, keys),
        "audit_dead": client.xlen(f"{keys.audit_stream}:dead") if client.exists(f"{keys.audit_stream}:dead") else 0,
    }


def audit_backlog(client: redis.Redis, keys: Keys) -> int:
    """Entries waiting in every audit stream: the main one (nodes, pools) and each job shard's."""
    with client.pipeline(transaction=False) as pipe:
        for stream in keys.audit_streams:
            pipe.xlen(stream)
        return sum(pipe.execute())


def wait_for_audit(client: redis.Redis, keys: Keys, timeout_s: float) -> float:
    """Seconds until the audit writer has emptied the stream (it deletes what it committed)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if audit_backlog(client, keys) == 0:
                break
        except (redis.ConnectionError, redis.TimeoutError):
            pass
        time.sleep(0.5)
    return time.monotonic() - started


def api_views(urls: list[str], api_key: str, job_ids: list[str]) -> dict[str, Any]:
    views: dict[str, Any] = {}
    with httpx.Client(headers={"Authorization": f"Bearer {api_key}"}, timeout=10) as http:
        for index, job_id in enumerate(job_ids):
            url = urls[index % len(urls)]
            try:
                response = http.get(f"{url}/api/v1/jobs/{job_id}")
            except httpx.HTTPError as exc:
                views[job_id] = {"http": None, "error": type(exc).__name__}
                continue
            body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
            views[job_id] = {"http": response.status_code, **(body if response.status_code == 200 else {"body": body})}
    return views


def database_rows(job_ids: list[str]) -> dict[str, Any]:
    """Job and attempt rows of the mirror for `job_ids`, plus the epoch high-water mark."""
    from jobs.models import Job, JobAttempt
    from pools.models import LeaderEpoch

    rows: dict[str, Any] = {}
    for start in range(0, len(job_ids), 500):
        chunk = job_ids[start : start + 500]
        for job in Job.objects.filter(job_id__in=chunk):
            rows[job.job_id] = {
                "state": job.state,
                "reason": job.reason,
                "ended_at": job.ended_at.timestamp() if job.ended_at else None,
                "attempts": {},
            }
        for attempt in JobAttempt.objects.filter(job_id__in=chunk):
            if attempt.job_id in rows:
                rows[attempt.job_id]["attempts"][str(attempt.attempt_id)] = {
                    "state": attempt.state,
                    "reason": attempt.reason,
                    "node_id": attempt.node_id,
                }
    return {"jobs": rows, "epoch_floor": LeaderEpoch.floor()}


def collect(run_dir: Path, urls: list[str], api_key: str, redis_url: str, prefix: str, rest_timeout_s: float) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
    keys = Keys(prefix)
    job_ids = sorted(
        {json.loads(line)["job"] for line in (run_dir / "client.jsonl").read_text().splitlines() if '"ev":"submit"' in line}
    )
    rest_s = wait_for_rest(client, keys, rest_timeout_s)
    at_rest = redis_at_rest(client, keys)
    audit_s = wait_for_audit(client, keys, 60)
    final = {
        "rest_wait_s": round(rest_s, 2),
        "audit_wait_s": round(audit_s, 2),
        "redis": at_rest,
        "api": api_views(urls, api_key, job_ids),
        "database": database_rows(job_ids),
    }
    (run_dir / "final.json").write_text(json.dumps(final))
    return final

"""`manage.py doctor` against real processes: a real Redis (running, stopped, misconfigured), the test
database, and real Celery worker and beat processes."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command

from console import findings, redis_checks
from core import audit
from core.redis import get_sync_redis, keys, run_sync
from supervisor.embedded_redis import RedisProcess
from tests.conftest import point_at_redis
from tests.support.processes import CeleryProcess

BASE_DIR = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^(OK|WARN|FAIL|SKIPPED)\s+(\S+): (.*)$")

pytestmark = pytest.mark.django_db(transaction=True)


def run_doctor(env: dict[str, str], *args: str, timeout: float = 1.0) -> subprocess.CompletedProcess[str]:
    """`manage.py doctor` as an operator runs it: its own process, settings from the environment."""
    return subprocess.run(
        [sys.executable, "manage.py", "doctor", "--timeout", str(timeout), *args],
        cwd=BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "scheduler.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def statuses(output: str) -> dict[str, tuple[str, str]]:
    """check name -> (status, detail) from the text report."""
    found = {}
    for line in output.splitlines():
        if match := LINE.match(line):
            found[match[2]] = (match[1], match[3])
    return found


def fix_of(output: str, name: str) -> str:
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if (match := LINE.match(line)) and match[2] == name:
            following = lines[index + 1] if index + 1 < len(lines) else ""
            return following.removeprefix("  fix: ") if following.startswith("  fix: ") else ""
    return ""


def record_audit_entry(node_id: str) -> None:
    run_sync(audit.record, "node", type="event", node_id=node_id, kind="registered", to="registering", at=int(time.time() * 1000))


@pytest.fixture
def celery_env(server_env: dict[str, str]) -> dict[str, str]:
    # No leader thread: these tests are about the worker answering and the audit writer, not about pools.
    return {**server_env, "POOL_LEADER_ENABLED": "false"}


@pytest.fixture
def worker(celery_env: dict[str, str]) -> Iterator[CeleryProcess]:
    with CeleryProcess(env=celery_env, kind="worker") as process:
        yield process


def test_without_a_celery_worker_doctor_exits_1_and_says_the_worker_is_missing(server_env):
    result = run_doctor(server_env)

    assert result.returncode == 1, result.stdout + result.stderr
    found = statuses(result.stdout)
    assert found["redis.reachable"][0] == "OK"
    assert found["database.migrations"][0] == "OK"
    assert found["channel_layer"][0] == "OK"
    status, detail = found["celery.worker"]
    assert status == "FAIL" and "no Celery worker answered" in detail
    assert "celery -A scheduler worker" in fix_of(result.stdout, "celery.worker")
    assert "Traceback" not in result.stderr


def test_with_redis_stopped_doctor_reports_redis_failed_with_a_fix_skips_the_rest_and_does_not_crash(settings, monkeypatch):
    from scheduler.celery import app

    server = RedisProcess().start()
    url = server.url
    server.stop()
    point_at_redis(settings, url)
    # The broker is this Redis too, as in a deployment that sets only REDIS_URL.
    monkeypatch.setattr(app.conf, "broker_url", url)
    out = io.StringIO()

    with pytest.raises(SystemExit) as exit_info:
        call_command("doctor", "--timeout", "1", stdout=out)

    assert exit_info.value.code == 1
    report = out.getvalue()
    found = statuses(report)
    status, detail = found["redis.reachable"]
    assert status == "FAIL" and f"127.0.0.1:{server.port}" in detail
    assert "REDIS_URL" in fix_of(report, "redis.reachable")
    for name in ("redis.eviction", "clock.host", "channel_layer", "celery.worker", "audit.writer"):
        assert found[name][0] == "SKIPPED", (name, report)
    assert found["database"][0] == "OK"


def test_a_redis_that_may_evict_keys_is_reported_as_a_failure_with_the_noeviction_fix(server_env):
    client = get_sync_redis()
    client.config_set("maxmemory", "100mb")
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        result = run_doctor(server_env, "--json", timeout=0.5)
    finally:
        # The session's Redis is shared by every later test.
        client.config_set("maxmemory", "0")
        client.config_set("maxmemory-policy", "noeviction")

    assert result.returncode == 1, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["ok"] is False
    eviction = next(f for f in document["findings"] if f["name"] == "redis.eviction")
    assert eviction["status"] == "FAIL"
    assert "allkeys-lru" in eviction["detail"]
    assert "CONFIG SET maxmemory-policy noeviction" in eviction["fix"]


def test_with_a_worker_and_beat_running_the_worker_check_passes_and_the_audit_stream_drains(celery_env, worker):
    with CeleryProcess(env=celery_env, kind="beat"):
        record_audit_entry("node-doctor-1")
        client = get_sync_redis()
        deadline = time.monotonic() + 15
        while client.xlen(keys().audit_stream) > 0:
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.2)

        result = run_doctor(celery_env)

    # Warnings remain (no web instance, no pool leader in this test) but nothing fails.
    assert result.returncode == 0, result.stdout + result.stderr
    found = statuses(result.stdout)
    assert found["celery.worker"][0] == "OK", result.stdout
    assert found["audit.writer"][0] == "OK", result.stdout
    assert "drained" in found["audit.writer"][1]
    assert "Traceback" not in result.stderr


def test_instances_that_stopped_advertising_are_reported_and_a_clock_ahead_of_redis_fails():
    client, k = get_sync_redis(), keys()
    now = findings.redis_time(client)
    # One live instance, one whose hash expired (it stopped advertising a minute ago).
    client.hset(k.instance("web-live"), mapping={"instance": "web-live", "seen_at": int(now)})
    client.zadd(k.instances, {"web-live": int(now), "web-gone": int(now) - 60})

    finding = redis_checks.check_instances(client, k.instances, k.instance, interval_s=5)
    assert finding.status == "WARN"
    assert "stopped advertising: web-gone" in finding.detail

    # An instance whose host clock runs 5 s ahead of Redis TIME.
    client.hset(k.instance("web-ahead"), mapping={"instance": "web-ahead", "seen_at": int(now) + 5})
    client.zadd(k.instances, {"web-ahead": int(now) + 5})
    finding = redis_checks.check_instances(client, k.instances, k.instance, interval_s=5)
    assert finding.status == "FAIL"
    assert "web-ahead" in finding.detail and "NTP" in finding.fix


def test_with_a_worker_but_no_beat_undelivered_audit_entries_say_beat_or_worker_not_running(celery_env, worker):
    record_audit_entry("node-doctor-2")
    record_audit_entry("node-doctor-3")
    time.sleep(1)

    result = run_doctor(celery_env, "--audit-lag-s", "0.5")

    assert result.returncode == 1, result.stdout + result.stderr
    found = statuses(result.stdout)
    assert found["celery.worker"][0] == "OK", result.stdout
    status, detail = found["audit.writer"]
    assert status == "FAIL" and "beat or worker not running" in detail
    assert "celery -A scheduler beat" in fix_of(result.stdout, "audit.writer")


def test_a_redis_that_persists_nothing_is_a_warning_with_a_fix_not_ok(server_env):
    client = get_sync_redis()
    saved = client.config_get("save")["save"], client.config_get("appendonly")["appendonly"]
    client.config_set("save", "")
    client.config_set("appendonly", "no")
    try:
        result = run_doctor(server_env, timeout=0.5)
    finally:
        client.config_set("save", saved[0])
        client.config_set("appendonly", saved[1])

    status, detail = statuses(result.stdout)["redis.persistence"]
    assert status == "WARN", result.stdout
    assert "persistence off" in detail
    assert "appendonly yes" in fix_of(result.stdout, "redis.persistence")
    # Which Redis it examined comes first, on stderr: never a silent look at some other server.
    assert result.stderr.startswith("Using Redis "), result.stderr

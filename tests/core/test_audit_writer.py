"""The audit writer moves stream entries into the database and acknowledges them only after the commit."""

from __future__ import annotations

import json
import sys
import types

import pytest
from django.db import OperationalError

from core import audit
from core.redis import get_sync_redis, keys, run_sync
from nodes.models import Node, NodeEvent


def pending_count() -> int:
    return get_sync_redis().xpending(keys().audit_stream, audit.GROUP)["pending"]


@pytest.mark.django_db
def test_entries_become_rows_and_leave_the_stream():
    run_sync(audit.record, "node", type="event", node_id="node-00000001", kind="registered", to="registering", at=1_700_000_000_000)
    run_sync(audit.record, "node", type="event", node_id="node-00000001", kind="status_changed", to="ready", at=1_700_000_001_000, **{"from": "registering"})

    assert audit.drain() == 2
    node = Node.objects.get(node_id="node-00000001")
    assert node.status == "ready"
    assert list(NodeEvent.objects.filter(node=node).values_list("kind", flat=True)) == ["status_changed", "registered"]
    assert get_sync_redis().xlen(keys().audit_stream) == 0
    assert pending_count() == 0


@pytest.mark.django_db
def test_a_failed_commit_leaves_the_entries_pending_and_the_next_run_writes_them(monkeypatch):
    calls = {"n": 0}

    def flaky(items):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("database is locked")
        from nodes.audit import apply_entries

        apply_entries(items)

    module = types.ModuleType("flaky_applier")
    module.apply = flaky  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "flaky_applier", module)
    monkeypatch.setitem(audit.APPLIERS, "node", "flaky_applier.apply")

    run_sync(audit.record, "node", type="event", node_id="node-00000002", kind="registered", to="registering", at=1_700_000_000_000)
    assert audit.write_batch() == 0
    assert pending_count() == 1
    assert not NodeEvent.objects.exists()

    assert audit.write_batch() == 1
    assert NodeEvent.objects.filter(node_ref="node-00000002").count() == 1
    assert pending_count() == 0


@pytest.mark.django_db
def test_a_poison_entry_goes_to_the_dead_letter_stream_without_blocking_the_others():
    run_sync(audit.record, "node", type="event", node_id="node-00000003", kind="registered", to="registering", at=1_700_000_000_000)
    run_sync(audit.record, "node", type="event", node_id="node-00000004", kind="registered", at="not a time")

    assert audit.drain() == 1

    assert NodeEvent.objects.filter(node_ref="node-00000003").count() == 1
    dead = get_sync_redis().xrange(f"{keys().audit_stream}:dead")
    assert [json.loads(fields["data"])["node_id"] for _, fields in dead] == ["node-00000004"]
    assert pending_count() == 0


@pytest.mark.django_db
def test_entries_a_dead_writer_took_are_claimed_by_another_after_the_idle_time(monkeypatch):
    run_sync(audit.record, "node", type="event", node_id="node-00000005", kind="registered", to="registering", at=1_700_000_000_000)
    client = get_sync_redis()
    audit._ensure_group(client, keys().audit_stream)
    client.xreadgroup(audit.GROUP, "dead-writer", {keys().audit_stream: ">"}, count=10)
    assert pending_count() == 1

    monkeypatch.setattr(audit, "CLAIM_IDLE_MS", 0)
    assert audit.write_batch(consumer="live-writer") == 1
    assert NodeEvent.objects.filter(node_ref="node-00000005").exists()

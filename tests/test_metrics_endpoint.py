"""/metrics serves the node-plane metrics, with gauges read from Redis at scrape time."""

from __future__ import annotations

import pytest

from core.redis import run_sync
from nodes import services
from nodes.registration import RegistrationRejected, register_node
from nodes.schemas import parse_node_message
from tests.factories import reference_heartbeat, register_message
from tests.support.metrics import scrape


@pytest.mark.django_db(transaction=True)
def test_nodes_by_status_is_read_from_redis_at_each_scrape(client):
    conn = services.Connection(token=None)
    registration = run_sync(register_node, parse_node_message(register_message()), conn)
    assert scrape(client)[("scheduler_nodes", (("status", "registering"),))] == 1

    run_sync(services.record_heartbeat, parse_node_message(reference_heartbeat(registration.node_id)), conn)
    after = scrape(client)
    assert after[("scheduler_nodes", (("status", "ready"),))] == 1
    assert after[("scheduler_nodes", (("status", "registering"),))] == 0

    run_sync(services.drain_node, registration.node_id, "ops")
    assert scrape(client)[("scheduler_nodes", (("status", "draining"),))] == 1


@pytest.mark.django_db(transaction=True)
def test_registrations_rejections_heartbeats_and_bad_messages_are_counted(client):
    before = scrape(client)
    conn = services.Connection(token=None)
    with pytest.raises(RegistrationRejected):
        run_sync(register_node, parse_node_message(register_message(capability_schema_version="1.0")), conn)
    registration = run_sync(register_node, parse_node_message(register_message()), conn)
    run_sync(services.record_heartbeat, parse_node_message(reference_heartbeat(registration.node_id)), conn)
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("scheduler_node_registrations_total", result="INVALID_CAPABILITY_SCHEMA") == 1
    assert grew("scheduler_node_registrations_total", result="ok") == 1
    assert grew("scheduler_node_heartbeats_total", result="ok") == 1
    assert ("scheduler_node_sockets_open", ()) in after

"""The event list: the audit trail of every node, filterable and searchable, and read-only."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from core import audit
from core.redis import run_sync
from nodes import services
from tests.admin.conftest import column, start_node

pytestmark = pytest.mark.django_db(transaction=True)
CHANGELIST = reverse("admin:nodes_nodeevent_changelist")


def test_the_event_list_filters_by_kind_and_status_and_searches_by_actor_and_node(
    admin_client: Client,
) -> None:
    start_node("node-A")
    start_node("node-B")
    run_sync(services.drain_node, "node-B", "alice", "maintenance")
    audit.drain()

    drained = column(admin_client.get(CHANGELIST, {"kind__exact": "drained"}).content.decode(), "node_ref")
    to_ready = column(
        admin_client.get(CHANGELIST, {"to_status__exact": "ready"}).content.decode(), "node_ref"
    )
    by_alice = column(admin_client.get(CHANGELIST, {"q": "alice"}).content.decode(), "node_ref")
    of_a = column(admin_client.get(CHANGELIST, {"node_ref": "node-A"}).content.decode(), "node_ref")

    assert drained == ["node-B"]
    assert sorted(to_ready) == ["node-A", "node-B"]
    assert set(by_alice) == {"node-B"}
    assert set(of_a) == {"node-A"} and len(of_a) >= 2


def test_events_cannot_be_added_changed_or_deleted(admin_client: Client) -> None:
    start_node("node-A")

    listing = admin_client.get(CHANGELIST).content.decode()
    add = admin_client.get(reverse("admin:nodes_nodeevent_add"))

    assert 'value="delete_selected"' not in listing
    assert add.status_code == 403

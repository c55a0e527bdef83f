"""The node page: stored record, live state, capability snapshot and the event history, all read-only."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from core import audit
from core.redis import run_sync
from nodes import services
from nodes.admin import RECENT_EVENTS
from nodes.models import Node, NodeEvent
from tests.admin.conftest import column, start_node

pytestmark = pytest.mark.django_db(transaction=True)


def page_of(client: Client, node_id: str) -> str:
    response = client.get(reverse("admin:nodes_node_change", args=[node_id]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_node_page_shows_the_capability_snapshot_and_the_live_state(admin_client: Client) -> None:
    start_node("node-A")

    html = page_of(admin_client, "node-A")

    assert "&quot;semantic-repair-en-zh&quot;" in html  # pretty-printed snapshot, escaped inside <pre>
    assert re.search(r"<pre>\{\n  &quot;", html)
    assert "&quot;status&quot;: &quot;ready&quot;" in html
    assert 'name="_save"' not in html  # read-only: the record mirrors Redis and the audit trail


def test_the_node_page_lists_its_events_newest_first(admin_client: Client) -> None:
    start_node("node-A")
    run_sync(services.drain_node, "node-A", "alice", "maintenance")
    audit.drain()

    html = page_of(admin_client, "node-A")

    kinds = column(html, "kind")
    assert kinds[0] in ("Drained", "Status Changed")
    assert kinds[-1] == "Registered"
    assert column(html, "transition")[0] == "ready → draining"
    assert column(html, "actor")[0] == "alice"
    assert column(html, "reason")[0] == "maintenance"
    assert 'name="events-MAX_NUM_FORMS" value="0"' in html  # nothing can be added
    assert 'name="events-0-kind"' not in html and 'name="events-0-DELETE"' not in html


def test_the_node_page_shows_only_the_newest_events_and_links_to_the_rest(admin_client: Client) -> None:
    start_node("node-A")
    node = Node.objects.get()
    base = timezone.now()
    NodeEvent.objects.bulk_create(
        NodeEvent(
            node=node,
            node_ref="node-A",
            kind="status_changed",
            reason=f"r{i}",
            at=base + timedelta(seconds=i),
        )
        for i in range(RECENT_EVENTS + 10)
    )

    html = page_of(admin_client, "node-A")

    reasons = column(html, "reason")
    assert len(reasons) == RECENT_EVENTS
    assert reasons[0] == f"r{RECENT_EVENTS + 9}"
    assert "/admin/nodes/nodeevent/?node_ref=node-A" in html

"""The drain action asks for a reason before draining (it used to record "admin" and ask nothing); the reason
goes into the node's history and onto the node page's first line."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from core import audit
from core.redis import run_sync
from nodes import services
from nodes.models import NodeEvent
from tests.admin.conftest import start_node

pytestmark = pytest.mark.django_db(transaction=True)
CHANGELIST = reverse("admin:nodes_node_changelist")


def test_drain_shows_a_reason_form_first_and_drains_nothing_until_it_is_filled(admin_client: Client) -> None:
    start_node("node-A")

    form = admin_client.post(CHANGELIST, {"action": "drain", "_selected_action": ["node-A"]}).content.decode()
    assert 'name="reason"' in form and "Drain 1 node: node-A" in form
    assert run_sync(services.get_node, "node-A")["status"] == "ready"

    blank = admin_client.post(CHANGELIST, {"action": "drain", "_selected_action": ["node-A"], "reason": " "})
    assert "This field is required" in blank.content.decode()
    assert run_sync(services.get_node, "node-A")["status"] == "ready"

    admin_client.post(
        CHANGELIST, {"action": "drain", "_selected_action": ["node-A"], "reason": "ticket OPS-7"}, follow=True
    )
    audit.drain()
    assert NodeEvent.objects.get(node_id="node-A", kind=NodeEvent.Kind.DRAINED).reason == "ticket OPS-7"
    page = admin_client.get(reverse("admin:nodes_node_change", args=["node-A"])).content.decode()
    summary = page.split('class="form-row field-answer"', 1)[1].split("</fieldset>", 1)[0]
    assert "draining" in summary and "drained by admin: ticket OPS-7" in summary

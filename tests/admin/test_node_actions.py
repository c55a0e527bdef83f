"""Drain, undrain and disconnect from the node list call the services as the signed-in admin."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from core import audit
from core.redis import get_sync_redis, keys, run_sync
from nodes import services
from nodes.models import NodeEvent
from tests.admin.conftest import column, new_channel, next_message, start_node

pytestmark = pytest.mark.django_db(transaction=True)
CHANGELIST = reverse("admin:nodes_node_changelist")


def act(client: Client, action: str, *node_ids: str, **fields: str) -> str:
    data = {"action": action, "_selected_action": list(node_ids), **fields}
    response = client.post(CHANGELIST, data, follow=True)
    assert response.status_code == 200
    return response.content.decode()


def test_the_drain_action_drains_the_node_and_its_history_names_the_admin(admin_client: Client) -> None:
    start_node("node-A")

    page = act(admin_client, "drain", "node-A", reason="GPU swap")
    audit.drain()

    assert "Drained: node-A (now draining)" in page
    assert run_sync(services.get_node, "node-A")["status"] == "draining"
    drained = NodeEvent.objects.get(node_id="node-A", kind=NodeEvent.Kind.DRAINED)
    assert (drained.actor, drained.from_status, drained.to_status, drained.reason) == ("admin", "ready", "draining", "GPU swap")
    history = admin_client.get(reverse("admin:nodes_node_change", args=["node-A"])).content.decode()
    assert "admin" in column(history, "actor")


def test_the_undrain_action_makes_a_drained_node_ready_again(admin_client: Client) -> None:
    start_node("node-A")
    act(admin_client, "drain", "node-A", reason="GPU swap")

    page = act(admin_client, "undrain", "node-A")

    assert "Undrained: node-A (now ready)" in page
    assert run_sync(services.get_node, "node-A")["status"] == "ready"


def test_an_action_on_a_node_redis_does_not_know_reports_it_as_not_live(admin_client: Client) -> None:
    start_node("node-A")
    start_node("node-B")
    get_sync_redis().delete(keys().node_meta("node-B"))

    page = act(admin_client, "drain", "node-A", "node-B", reason="GPU swap")

    assert "Drained: node-A (now draining)" in page
    assert "Not drained (not live): node-B" in page


def test_the_disconnect_action_closes_the_socket_of_the_node(admin_client: Client) -> None:
    channel = new_channel()
    node = start_node("node-A", channel=channel)

    page = act(admin_client, "disconnect", "node-A")

    assert "Disconnected: node-A" in page
    close = next_message(channel, "node.close")
    assert close["code"] == services.CLOSE_DISCONNECTED
    assert close["conn_id"] == node.conn.conn_id


def test_disconnecting_a_node_without_a_socket_says_so(admin_client: Client) -> None:
    start_node("node-A")

    page = act(admin_client, "disconnect", "node-A")

    assert "Not disconnected (holds no socket: offline or HTTP link): node-A" in page


def test_a_staff_user_without_the_change_permission_gets_no_node_actions(
    client: Client, django_user_model
) -> None:
    from django.contrib.auth.models import Permission

    start_node("node-A")
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_node"))
    client.force_login(viewer)

    listing = client.get(CHANGELIST).content.decode()
    refused = client.post(CHANGELIST, {"action": "drain", "_selected_action": ["node-A"]}, follow=True)

    assert ">node-A</a>" in listing
    assert 'value="drain"' not in listing
    assert run_sync(services.get_node, "node-A")["status"] == "ready"
    assert refused.status_code == 200

"""Node tokens in the admin: the plaintext is shown once at creation and never stored; revoking one closes
the sockets that use it."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.contrib.admin.utils import quote
from django.test import Client
from django.urls import reverse

from core.redis import run_sync
from nodes import services
from nodes.models import NodeToken
from nodes.schemas import NodeHeartbeat
from tests.admin.conftest import new_channel, next_message, start_node
from tests.factories import heartbeat_message

pytestmark = pytest.mark.django_db(transaction=True)
ADD = reverse("admin:nodes_nodetoken_add")
CHANGELIST = reverse("admin:nodes_nodetoken_changelist")
PLAINTEXT = re.compile(r"nt_[0-9a-f]{12}\.[A-Za-z0-9_-]{20,}")


def create_token(client: Client, **fields: str) -> tuple[str, str]:
    data = {
        "name": "gpu-box-1",
        "node_id": "",
        "expires_at_0": "",
        "expires_at_1": "",
        "_save": "Save",
        **fields,
    }
    response = client.post(ADD, data, follow=True)
    assert response.status_code == 200
    html = response.content.decode()
    return html, PLAINTEXT.search(html).group(0) if PLAINTEXT.search(html) else ""


def token_info(token: NodeToken) -> services.TokenInfo:
    return services.TokenInfo(id=token.id, node_id=token.node_id, expires_at_ms=token.expires_at_ms)


def test_creating_a_token_shows_the_plaintext_once_and_stores_only_its_hash(admin_client: Client) -> None:
    html, plaintext = create_token(
        admin_client, node_id="node-A", expires_at_0="2999-01-01", expires_at_1="00:00:00"
    )

    assert plaintext, "the plaintext token is not on the page after creation"
    assert "will not be shown again" in html
    token_id, secret = plaintext.split(".")
    token = NodeToken.objects.get()
    assert (token.id, token.name, token.node_id, token.expires_at.year) == (
        token_id,
        "gpu-box-1",
        "node-A",
        2999,
    )
    assert token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert NodeToken.authenticate(plaintext) == token
    assert token.created_by.get_username() == "admin"
    assert secret not in admin_client.get(CHANGELIST).content.decode()
    # Admin URLs carry primary keys quoted: "nt_26..." would otherwise read as "nt&...".
    change_page = reverse("admin:nodes_nodetoken_change", args=[quote(token.id)])
    assert secret not in admin_client.get(change_page).content.decode()


def test_no_token_page_shows_the_secret_hash(admin_client: Client) -> None:
    token, _ = NodeToken.issue("gpu-box-1")

    responses = [
        admin_client.get(CHANGELIST),
        admin_client.get(reverse("admin:nodes_nodetoken_change", args=[quote(token.id)])),
    ]
    assert [(r.status_code, r.get("Location")) for r in responses] == [(200, None), (200, None)]
    pages = [r.content.decode() for r in responses]

    for page in pages:
        assert token.id in page
        assert token.secret_hash not in page
        assert "secret_hash" not in page


def test_a_token_bound_to_a_node_id_no_node_can_register_is_refused(admin_client: Client) -> None:
    html, plaintext = create_token(admin_client, node_id="bad id!")

    assert plaintext == ""
    assert "A node id holds only letters" in html
    assert not NodeToken.objects.exists()


def test_revoking_a_token_marks_it_revoked_and_refuses_its_heartbeats(admin_client: Client) -> None:
    token, plaintext = NodeToken.issue("gpu-box-1")
    node = start_node("node-A", token=token_info(token))

    response = admin_client.post(
        CHANGELIST, {"action": "revoke", "_selected_action": [token.id]}, follow=True
    )

    token.refresh_from_db()
    assert f"Revoked: {token.id}" in response.content.decode()
    assert token.revoked_at is not None and token.revoked_by == "admin"
    assert NodeToken.authenticate(plaintext) is None
    heartbeat = NodeHeartbeat.model_validate(heartbeat_message("node-A"))
    assert run_sync(services.record_heartbeat, heartbeat, node.conn).result == "revoked"


def test_revoking_a_token_closes_the_live_socket_that_uses_it(admin_client: Client) -> None:
    token, _ = NodeToken.issue("gpu-box-1")
    channel = new_channel()
    start_node("node-A", token=token_info(token), channel=channel)

    response = admin_client.post(
        CHANGELIST, {"action": "revoke", "_selected_action": [token.id]}, follow=True
    )

    assert f"Revoked: {token.id} (1 live connection closed)" in response.content.decode()
    assert next_message(channel, "node.close")["code"] == services.CLOSE_TOKEN_REVOKED


def test_revoking_a_revoked_token_again_keeps_the_first_revocation(admin_client: Client) -> None:
    token, _ = NodeToken.issue("gpu-box-1")
    admin_client.post(CHANGELIST, {"action": "revoke", "_selected_action": [token.id]})
    token.refresh_from_db()
    first = token.revoked_at

    response = admin_client.post(
        CHANGELIST, {"action": "revoke", "_selected_action": [token.id]}, follow=True
    )

    token.refresh_from_db()
    assert token.revoked_at == first
    assert f"Already revoked: {token.id}" in response.content.decode()

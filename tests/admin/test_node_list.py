"""The node list shows each stored record beside its live state, read from Redis once per page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from core.redis import get_sync_redis, keys, run_sync
from nodes import services
from nodes.models import Node
from nodes.schemas import NodeRegister
from nodes.services import Connection
from tests.admin.conftest import column, start_node
from tests.factories import register_message

pytestmark = pytest.mark.django_db(transaction=True)
CHANGELIST = reverse("admin:nodes_node_changelist")


def row_of(html: str, node_id: str) -> str:
    """The <tr> of one node in the changelist."""
    match = re.search(rf"<tr>(?:(?!</tr>).)*?>{re.escape(node_id)}</a>.*?</tr>", html, re.S)
    assert match, f"{node_id} is not listed"
    return match.group(0)


def test_the_node_list_shows_the_live_status_and_load_beside_the_stored_record(admin_client: Client) -> None:
    start_node("node-A")
    # The stored status lags behind on purpose: only Redis knows the node has been drained since.
    run_sync(services.drain_node, "node-A", "someone", "")

    row = row_of(admin_client.get(CHANGELIST).content.decode(), "node-A")

    assert '<td class="field-live_status">draining</td>' in row
    assert '<td class="field-status">Ready</td>' in row
    assert '<td class="field-live_load">0/4</td>' in row
    assert '<td class="field-live_reserved">0</td>' in row
    assert '<td class="field-pool">en-zh</td>' in row
    assert '<td class="field-languages_display">en, zh</td>' in row
    assert '<td class="field-version">2.0.0</td>' in row


def test_the_node_list_reads_redis_once_however_many_nodes_it_shows(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    for node_id in ("node-A", "node-B", "node-C"):
        start_node(node_id)
    calls: list[tuple[Any, ...]] = []
    real_list_nodes = services.list_nodes

    async def counting_list_nodes(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        calls.append(args)
        return await real_list_nodes(*args, **kwargs)

    monkeypatch.setattr(services, "list_nodes", counting_list_nodes)
    html = admin_client.get(CHANGELIST).content.decode()

    assert len(calls) == 1
    for node_id in ("node-A", "node-B", "node-C"):
        assert '<td class="field-live_status">ready</td>' in row_of(html, node_id)


def test_a_node_that_redis_no_longer_knows_is_listed_as_not_live(admin_client: Client) -> None:
    start_node("node-A")
    get_sync_redis().delete(keys().node_meta("node-A"))

    row = row_of(admin_client.get(CHANGELIST).content.decode(), "node-A")

    assert '<td class="field-live_status">not live</td>' in row
    assert '<td class="field-status">Ready</td>' in row


def test_the_node_list_filters_by_stored_status_and_pool(admin_client: Client) -> None:
    start_node("node-A")
    start_node(
        "node-B",
        language_capabilities={
            "asr_languages": ["de", "en"],
            "semantic_languages": ["de", "en"],
            "tts_languages": ["de", "en"],
            "semantic_core_ready": True,
        },
    )
    Node.objects.create(node_id="node-C", status="offline", pool="en-zh")

    by_pool = admin_client.get(CHANGELIST, {"pool": "de-en"}).content.decode()
    by_status = admin_client.get(CHANGELIST, {"status__exact": "offline"}).content.decode()
    searched = admin_client.get(CHANGELIST, {"q": "node-B"}).content.decode()

    assert ">node-B</a>" in by_pool and ">node-A</a>" not in by_pool
    assert ">node-C</a>" in by_status and ">node-A</a>" not in by_status
    assert ">node-B</a>" in searched and ">node-A</a>" not in searched


def test_the_node_list_shows_when_the_last_heartbeat_came_and_from_which_instance(
    admin_client: Client, settings
) -> None:
    start_node("node-A")

    html = admin_client.get(CHANGELIST).content.decode()

    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d s ago\)", column(html, "live_heartbeat")[0])
    assert column(html, "live_instance") == [settings.INSTANCE_ID]


def test_the_node_list_mentions_live_nodes_the_audit_writer_has_not_recorded_yet(
    admin_client: Client,
) -> None:
    start_node("node-A")
    message = NodeRegister.model_validate(register_message(node_id="node-B"))
    run_sync(services.register_node, message, Connection(token=None))  # no audit.drain(): no row yet

    html = admin_client.get(CHANGELIST).content.decode()

    assert "1 live node(s) not in the database yet (the audit writer records them): node-B" in html

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
from nodes.registration import register_node
from nodes.schemas import NodeRegister
from nodes.services import Connection
from tests.admin.conftest import column, start_node
from tests.factories import register_message

pytestmark = pytest.mark.django_db(transaction=True)
CHANGELIST = reverse("admin:nodes_node_changelist")


def cell(row: str, field: str) -> str:
    """The text of one cell of a row, without its markup."""
    match = re.search(rf'<td class="field-{field}">(.*?)</td>', row, re.S)
    assert match, f"no {field} cell in {row}"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def row_of(html: str, node_id: str) -> str:
    """The <tr> of one node in the changelist."""
    match = re.search(rf"<tr>(?:(?!</tr>).)*?>{re.escape(node_id)}</a>.*?</tr>", html, re.S)
    assert match, f"{node_id} is not listed"
    return match.group(0)


def test_the_node_list_shows_one_status_the_live_one_with_load_pool_and_languages(admin_client: Client) -> None:
    start_node("node-A")
    # The stored status lags behind on purpose: only Redis knows the node has been drained since.
    run_sync(services.drain_node, "node-A", "someone", "")

    row = row_of(admin_client.get(CHANGELIST).content.decode(), "node-A")

    # One status column: the live one (the stored record still says ready).
    assert cell(row, "status_now") == "draining"
    assert cell(row, "live_load") == "0/4"
    assert cell(row, "pool") == "en-zh"
    assert cell(row, "languages_display") == "en, zh"
    assert cell(row, "version") == "2.0.0"


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
        assert cell(row_of(html, node_id), "status_now") == "ready"


def test_a_node_that_redis_no_longer_knows_is_listed_as_offline(admin_client: Client) -> None:
    start_node("node-A")
    get_sync_redis().delete(keys().node_meta("node-A"))

    row = row_of(admin_client.get(CHANGELIST).content.decode(), "node-A")

    assert cell(row, "status_now") == "offline"


def test_the_node_list_filters_by_live_status_and_pool(admin_client: Client) -> None:
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
    by_status = admin_client.get(CHANGELIST, {"live": "offline"}).content.decode()
    searched = admin_client.get(CHANGELIST, {"q": "node-B"}).content.decode()

    assert ">node-B</a>" in by_pool and ">node-A</a>" not in by_pool
    assert ">node-C</a>" in by_status and ">node-A</a>" not in by_status
    assert ">node-B</a>" in searched and ">node-A</a>" not in searched


def test_the_node_list_shows_when_the_last_heartbeat_came_and_from_which_instance(
    admin_client: Client, settings
) -> None:
    start_node("node-A")

    html = admin_client.get(CHANGELIST).content.decode()

    seen = column(html, "last_seen")[0]
    assert re.fullmatch(r'<time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">\d s ago</time>', seen), seen
    by_instance = admin_client.get(CHANGELIST, {"instance": settings.INSTANCE_ID}).content.decode()
    assert ">node-A</a>" in by_instance
    assert ">node-A</a>" not in admin_client.get(CHANGELIST, {"instance": "elsewhere"}).content.decode()


def test_the_node_list_mentions_live_nodes_the_audit_writer_has_not_recorded_yet(
    admin_client: Client,
) -> None:
    start_node("node-A")
    message = NodeRegister.model_validate(register_message(node_id="node-B"))
    run_sync(register_node, message, Connection(token=None))  # no audit.drain(): no row yet

    html = admin_client.get(CHANGELIST).content.decode()

    assert "1 live node(s) not in the database yet (the audit writer records them): node-B" in html

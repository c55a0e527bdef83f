"""With Redis down the node pages still render the stored records, say that live data is missing, and
actions say they were not done."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import reverse

from nodes.admin import REDIS_DOWN_WARNING
from supervisor.embedded_redis import RedisProcess
from tests.admin.conftest import start_node
from tests.conftest import point_at_redis

pytestmark = pytest.mark.django_db(transaction=True)
CHANGELIST = reverse("admin:nodes_node_changelist")


@pytest.fixture
def own_redis(settings) -> Iterator[RedisProcess]:
    with RedisProcess() as server:
        point_at_redis(settings, server.url)
        yield server


def test_the_node_list_renders_the_stored_records_with_a_warning_when_redis_is_down(
    admin_client: Client, own_redis: RedisProcess
) -> None:
    start_node("node-A")
    assert 'class="status status-ready"' in admin_client.get(CHANGELIST).content.decode()

    own_redis.kill()
    started = time.monotonic()
    response = admin_client.get(CHANGELIST)
    elapsed = time.monotonic() - started

    html = response.content.decode()
    assert response.status_code == 200
    assert ">node-A</a>" in html
    assert '<td class="field-status_now">ready <span class="quiet">(stored; Redis down)</span></td>' in html
    assert REDIS_DOWN_WARNING in html
    # Well under the time a hung connection would take (socket timeouts), even on a loaded machine.
    assert elapsed < 10, f"a dead Redis held the page for {elapsed:.1f} s"


def test_the_node_page_renders_with_a_warning_when_redis_is_down(
    admin_client: Client, own_redis: RedisProcess
) -> None:
    start_node("node-A")
    own_redis.kill()

    response = admin_client.get(reverse("admin:nodes_node_change", args=["node-A"]))

    html = response.content.decode()
    assert response.status_code == 200
    assert REDIS_DOWN_WARNING in html
    assert "unknown: Redis is unavailable" in html
    assert "RTX 4090" in html


def test_a_drain_while_redis_is_down_reports_that_it_was_not_done(
    admin_client: Client, own_redis: RedisProcess
) -> None:
    start_node("node-A")
    own_redis.kill()

    response = admin_client.post(CHANGELIST, {"action": "drain", "_selected_action": ["node-A"], "reason": "GPU swap"}, follow=True)

    assert response.status_code == 200
    assert "Not drained (Redis unavailable): node-A" in response.content.decode()

"""The pools admin: the stored configuration history beside the live pools from Redis, the rebuild button, and
the epoch mark, all read-only."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from core import audit
from core.redis import get_sync_redis, keys, run_sync
from nodes import services
from pools.admin import NO_LEADER_WARNING, REDIS_DOWN_WARNING
from pools.leader import Leader
from pools.models import LeaderEpoch, PoolConfigVersion
from supervisor.embedded_redis import RedisProcess
from tests.conftest import point_at_redis
from tests.pools.test_pool_membership import start

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = reverse("admin:pools_poolconfigversion_changelist")
REBUILD = reverse("admin:pools_poolconfigversion_rebuild")


def live_rows(html: str) -> dict[str, dict[str, str]]:
    """The live pools table as {pool name: {column: text}}."""
    rows = {}
    for row in re.findall(r'<tr class="live-pool">(.*?)</tr>', html, re.S):
        cells = dict(re.findall(r'<td class="live-(\w+)">(.*?)</td>', row, re.S))
        rows[cells["name"]] = cells
    return rows


def test_the_changelist_shows_the_live_pools_with_sizes_and_the_stored_versions(admin_client: Client) -> None:
    a, _ = run_sync(start, ["en", "zh"])
    run_sync(start, ["en", "zh"])
    run_sync(start, ["de", "en"])
    run_sync(services.drain_node, a, "ops")
    audit.drain()

    html = admin_client.get(CHANGELIST).content.decode()

    rows = live_rows(html)
    assert (rows["en-zh"]["size"], rows["en-zh"]["ready"], rows["en-zh"]["languages"]) == ("1", "1", "en, zh")
    assert (rows["de-en"]["size"], rows["overflow"]["pool_id"], rows["overflow"]["size"]) == ("1", "0", "0")
    assert "Configuration <strong>v2</strong>" in html
    assert 'class="live-leader">none</strong>' in html
    assert '<td class="field-added">en-zh</td>' in html
    assert '<td class="field-added">de-en</td>' in html
    assert "Rebuild now" in html


def test_the_changelist_names_the_leader_holding_the_lease(admin_client: Client) -> None:
    run_sync(start, ["en", "zh"])
    leader = Leader("worker-9/xyz")
    run_sync(leader.step)

    html = admin_client.get(CHANGELIST).content.decode()

    assert 'class="live-leader">worker-9/xyz</strong> (epoch 1)' in html


def test_a_version_page_shows_its_pools_and_change_pretty_printed(admin_client: Client) -> None:
    run_sync(start, ["en", "zh"])
    audit.drain()
    version = PoolConfigVersion.objects.get()

    html = admin_client.get(
        reverse("admin:pools_poolconfigversion_change", args=[version.pk])
    ).content.decode()

    assert "<pre>[\n  {\n" in html
    assert "&quot;name&quot;: &quot;en-zh&quot;" in html
    assert "&quot;added&quot;: [\n    &quot;en-zh&quot;\n  ]" in html


def test_the_rebuild_button_asks_the_leader_and_reports_the_version_it_waits_on(admin_client: Client) -> None:
    run_sync(start, ["en", "zh"])

    response = admin_client.post(REBUILD, follow=True)

    assert get_sync_redis().get(keys().pool_rebuild_request) == "admin"
    html = response.content.decode()
    assert "the leader writes the version after v1" in html
    assert NO_LEADER_WARNING.replace("`", "") in html.replace("`", "")
    assert PoolConfigVersion.objects.count() == 0  # nothing rebuilt in the web process


def test_the_rebuild_button_does_not_warn_while_a_leader_holds_the_lease(admin_client: Client) -> None:
    run_sync(start, ["en", "zh"])
    run_sync(Leader("worker-1").step)

    html = admin_client.post(REBUILD, follow=True).content.decode()

    assert "the leader writes the version after v2" in html
    assert "No process holds the pool leader lease" not in html


def test_rebuilding_takes_the_change_permission_and_a_post(client: Client) -> None:
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_poolconfigversion"))
    client.force_login(viewer)

    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert "Rebuild now" not in page.content.decode()
    assert client.post(REBUILD).status_code == 403
    assert get_sync_redis().get(keys().pool_rebuild_request) is None
    client.force_login(User.objects.create_superuser("boss", password="pw"))
    assert client.get(REBUILD).status_code == 405


def test_the_epoch_mark_is_listed_and_cannot_be_edited(admin_client: Client) -> None:
    LeaderEpoch.raise_to(7)

    html = admin_client.get(reverse("admin:pools_leaderepoch_changelist")).content.decode()

    assert '<td class="field-epoch">7</td>' in html
    page = admin_client.get(reverse("admin:pools_leaderepoch_change", args=["pools"])).content.decode()
    assert 'name="epoch"' not in page


@pytest.fixture
def own_redis(settings) -> Iterator[RedisProcess]:
    with RedisProcess() as server:
        point_at_redis(settings, server.url)
        yield server


def test_with_redis_down_the_history_renders_with_a_warning(
    admin_client: Client, own_redis: RedisProcess
) -> None:
    run_sync(start, ["en", "zh"])
    audit.drain()
    own_redis.kill()

    response = admin_client.get(CHANGELIST)

    html = response.content.decode()
    assert response.status_code == 200
    assert REDIS_DOWN_WARNING in html
    assert "Unknown: Redis is unavailable." in html
    assert '<td class="field-added">en-zh</td>' in html

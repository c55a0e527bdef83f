"""A job dispatched to a node that never acks (the real lingua agent sends neither `job_ack` nor
`job_started`) counts as running from the moment it is sent: in the REST node view, the admin node list,
the live cluster page, `scheduler_pool_slots` and `drain_node`'s summary. A node that does ack keeps its slot reserved until the
ack, and its ack timeout still applies."""

from __future__ import annotations

from io import StringIO

import httpx
import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from access.models import ApiKey, Scope
from core import audit
from tests.admin.conftest import column
from tests.jobs.support import AUDIO, capacity_in_use, ready_fleet, ready_node
from tests.support.metrics import scrape_url

pytestmark = pytest.mark.django_db(transaction=True)


def slots(url: str, state: str) -> float:
    return scrape_url(url)[("scheduler_pool_slots", (("pool", "en-zh"), ("state", state)))]


async def test_a_job_on_a_node_that_never_acks_shows_as_running_everywhere_while_it_works(
    server, node_token, jobs_key, admin_client: Client
) -> None:
    reader = (await database_sync_to_async(ApiKey.issue)("reader", [Scope.NODES_READ]))[1]
    async with ready_fleet(server.ws_url, node_token, 1, processing_ms=60_000) as fleet:
        [node] = fleet.nodes
        async with httpx.AsyncClient(base_url=server.url) as api:
            await api.post(
                "/api/v1/jobs",
                json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO},
                headers={"Authorization": f"Bearer {jobs_key}"},
            )
            await node.wait_for(lambda: len(node.active_jobs) == 1)
            view = (await api.get(f"/api/v1/nodes/{node.node_id}", headers={"Authorization": f"Bearer {reader}"})).json()
        assert (view["running"], view["reserved"]) == (1, 0)
        assert (slots(server.url, "running"), slots(server.url, "reserved")) == (1, 0)

        await database_sync_to_async(audit.drain)()
        listing = await database_sync_to_async(admin_client.get)(reverse("admin:nodes_node_changelist"))
        assert column(listing.content.decode(), "live_load") == ["1/4"]
        live = (await database_sync_to_async(admin_client.get)(reverse("live_cluster_data"))).json()
        [pool] = [row for row in live["pools"] if row["name"] == "en-zh"]
        assert (pool["running"], pool["reserved"]) == (1, 0)

        out = StringIO()
        await database_sync_to_async(call_command)("drain_node", node.node_id, stdout=out)
        assert "(running 1 jobs)" in out.getvalue()
        assert node.sent_of_type("job_ack") == [] and node.sent_of_type("job_started") == []


async def test_a_node_that_acks_holds_a_reserved_slot_until_its_ack_and_still_times_out_without_one(
    start_job_server, node_token, jobs_key
) -> None:
    # An ack timeout long enough that the slot is still held when /metrics is read on a loaded machine.
    server = start_job_server(JOB_ACK_TIMEOUT_S="4", JOB_PENDING_TIMEOUT_S="0.3")
    wire, node_id = await ready_node(server, node_token, supports_job_ack=True)
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}, timeout=30) as api:
        answer = await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})
        await wire.expect("job_assign")
        assert (slots(server.url, "running"), slots(server.url, "reserved")) == (0, 1)
        job = (await api.get(f"/api/v1/jobs/{answer.json()['job_id']}", params={"wait": 15})).json()
    assert (job["state"], job["attempts"][0]["reason"]) == ("FAILED", "ACK_TIMEOUT")
    assert job["error"]["message"].startswith(f"attempt 1 ({node_id}): ACK_TIMEOUT; ")
    assert await capacity_in_use(node_id) == 0
    await wire.close()

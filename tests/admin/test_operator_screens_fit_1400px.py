"""The admin as an operator sees it at 1400 px, in a real browser against a real server with simulated nodes
that ran jobs: the node and job lists show their key columns without sideways scrolling, and a node's and a
job's page lead with the answer (status, where, when) before any detail. Screenshots of each page are saved
under var/screenshots/."""

from __future__ import annotations

import httpx
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model

from core import audit
from jobs.loadgen import LoadConfig, run_load
from nodes.services import drain_node
from tests.jobs.support import ready_fleet
from tests.support.browser import hidden_columns, log_in, operator_page, screenshot

pytestmark = pytest.mark.django_db(transaction=True)

NODE_COLUMNS = ["Node", "Status", "Pool", "Languages", "Load", "Version", "Last seen"]
JOB_COLUMNS = ["Job", "State", "Languages", "Node", "Attempts", "Created", "Duration"]


async def first_screen_answer(page) -> str:
    """The text of the page's summary line, which must sit entirely on the first screen, above any detail."""
    box = await page.evaluate(
        """() => {
            const answer = document.querySelector(".field-answer");
            if (!answer) return null;
            const fieldsets = [...document.querySelectorAll("#content fieldset")];
            const rect = answer.getBoundingClientRect();
            return {bottom: rect.bottom, height: window.innerHeight, first: fieldsets[0].contains(answer), text: answer.innerText};
        }"""
    )
    assert box is not None, "no summary line on the page"
    assert box["first"] and box["bottom"] <= box["height"], box
    return box["text"]


@pytest.mark.timeout(120)
async def test_lists_fit_1400px_and_detail_pages_lead_with_the_answer(start_job_server, node_token, jobs_key):
    server = start_job_server(LOG_LEVEL="WARNING")
    await database_sync_to_async(get_user_model().objects.create_superuser)("ops", "ops@example.org", "ops-password")

    async with ready_fleet(server.ws_url, node_token, 4, seed=3, processing_ms=20, failure_rate=0.3, heartbeat_interval_s=5) as fleet:
        report = await run_load(
            LoadConfig(api_key=jobs_key, url=server.url, count=12, concurrency=3, src_lang="en", tgt_lang="zh")
        )
        assert sum(report.terminal.values()) == 12, report.terminal
        drained = fleet.nodes[0].node_id
        await drain_node(drained, "ops", "replacing the GPU")
        await database_sync_to_async(audit.drain)()
        listing = httpx.get(
            f"{server.url}/api/v1/jobs", params={"limit": 1}, headers={"Authorization": f"Bearer {jobs_key}"}
        ).json()
        job_id = listing["jobs"][0]["job_id"]

        async with operator_page(server.url) as page:
            await log_in(page, server.url, "ops", "ops-password")

            await page.goto(f"{server.url}/admin/nodes/node/")
            await screenshot(page, "node-list")
            assert await hidden_columns(page, "#result_list", NODE_COLUMNS) == {}
            row = await page.inner_text(f"#result_list tbody tr:has-text('{drained}')")
            assert "draining" in row

            await page.click(f"#result_list a:text-is('{drained}')")
            await screenshot(page, "node")
            answer = await first_screen_answer(page)
            assert "draining" in answer and "replacing the GPU" in answer, answer
            assert "pool en-zh" in answer and "s ago" in answer and "<" not in answer, answer

            await page.goto(f"{server.url}/admin/jobs/job/")
            await screenshot(page, "job-list")
            assert await hidden_columns(page, "#result_list", JOB_COLUMNS) == {}

            await page.goto(f"{server.url}/admin/jobs/job/{job_id}/change/")
            await screenshot(page, "job")
            answer = await first_screen_answer(page)
            state = listing["jobs"][0]["state"]
            assert state in answer and listing["jobs"][0]["node_id"] in answer, answer

            await page.goto(f"{server.url}/admin/cluster/")
            await page.wait_for_selector("#plot-jobs")
            await screenshot(page, "live-cluster-1400")

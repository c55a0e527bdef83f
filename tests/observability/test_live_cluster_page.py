"""The live cluster page in a real browser: Debian's Chromium, driven by Playwright, against a real server with
simulated nodes running jobs. The page shows the live state from Redis, refreshes itself, and a screenshot
is saved under var/screenshots/ for people to look at."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model

from jobs.loadgen import LoadConfig, run_load
from nodes.models import Node
from nodes.services import drain_node
from tests.jobs.support import ready_fleet
from tests.support.tools import require_tool

pytestmark = pytest.mark.django_db(transaction=True)

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def badge(status: str) -> str:
    return f'#nodes-by-status [data-status="{status}"]'


@pytest.mark.timeout(120)
async def test_the_live_page_shows_redis_state_with_plots_refreshes_itself_and_is_screenshotted(
    start_job_server, node_token, jobs_key
):
    chromium = require_tool("chromium", "CHROMIUM")
    from playwright.async_api import async_playwright

    # One attempt per job, so that node failures end jobs FAILED and the failure tables have something to show.
    server = start_job_server(STATS_SAMPLE_INTERVAL_S="0.5", LOG_LEVEL="WARNING", JOB_MAX_ATTEMPTS="1")
    await database_sync_to_async(get_user_model().objects.create_superuser)(
        "ops", "ops@example.org", "ops-password"
    )
    # A node the database remembers but Redis does not know: the page must not count it.
    await database_sync_to_async(Node.objects.create)(node_id="node-DBONLY00", status="ready", pool="en-zh")

    nodes = {"processing_ms": 20, "failure_rate": 0.2, "heartbeat_interval_s": 5}
    async with ready_fleet(server.ws_url, node_token, 3, seed=5, **nodes) as fleet:
        report = await run_load(
            LoadConfig(
                api_key=jobs_key,
                url=server.url,
                count=30,
                concurrency=3,
                src_lang="en",
                tgt_lang="zh",
                wait_s=10,
            )
        )
        assert sum(report.terminal.values()) == 30 and report.terminal["FAILED"] > 0, report.terminal
        await asyncio.sleep(1.5)  # a few history points after the load

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            page = await browser.new_page(viewport={"width": 1400, "height": 1100})
            await page.goto(f"{server.url}/admin/login/?next=/admin/cluster/")
            await page.fill("#id_username", "ops")
            await page.fill("#id_password", "ops-password")
            await page.click("input[type=submit]")
            await page.wait_for_url("**/admin/cluster/")

            assert await page.inner_text(badge("ready")) == "ready 3"
            assert "total 3" in await page.inner_text(
                "#nodes-by-status"
            )  # not 4: the database-only node is not live
            pool_row = await page.inner_text("#pools tbody tr:first-child")
            assert "en-zh" in pool_row
            instances = await page.inner_text("#instances tbody")
            assert str(server.pid) in instances and "\t3\t" in instances, (
                instances
            )  # its pid, its 3 node sockets
            assert "no leader" in await page.inner_text("#leader")  # no Celery worker runs here
            failures = await page.inner_text("#failures tbody")
            assert failures == f"NODE_ERROR\t{report.terminal['FAILED']}", failures
            for plot in ("plot-jobs", "plot-latency", "plot-ready"):
                assert await page.locator(f"#{plot} polyline").count() == 1, plot
                # A time axis over the whole last hour (every 15 min, UTC) and a y scale of round numbers.
                labels = await page.locator(f"#{plot} .axis text").all_text_contents()
                assert len(labels) == 3 + 5 and labels[0] == "0", labels
                assert all(re.fullmatch(r"\d+(\.\d{1,2})?", label) for label in labels[:3]), labels
                assert all(re.fullmatch(r"(now )?\d\d:\d\d", label) for label in labels[3:]), labels
                assert labels[-1].startswith("now "), labels
                readout = await page.inner_text(f"#{plot} .last")
                assert re.fullmatch(r"now (≤ )?[\d.]+( ms|/s)? · max [\d.]+( ms|/s)? in the last hour", readout), readout
                assert not re.search(r"\d\.\d{3}", readout), readout  # rounded, no float noise
            assert "bucket upper bound" in await page.inner_text("#plot-latency h3")
            # Failures, pools and instances lead to the admin pages behind them.
            reason_link = await page.get_attribute("#failures tbody a", "href")
            assert reason_link.endswith("/admin/jobs/job/?reason__exact=NODE_ERROR"), reason_link
            job_link = await page.get_attribute("#recent tbody a", "href")
            assert re.search(r"/admin/jobs/job/job-[0-9a-f]+/change/$", job_link), job_link
            assert (await page.get_attribute("#pools tbody a", "href")).endswith("/admin/nodes/node/?pool__exact=en-zh")
            assert "/admin/nodes/node/?instance=" in await page.get_attribute("#instances tbody a", "href")

            # It refreshes by itself: a drain shows up without reloading the page.
            read_before = await page.evaluate("document.body.dataset.liveReadAt")
            await drain_node(fleet.nodes[0].node_id, "ops")
            await page.wait_for_selector(badge("draining") + ":has-text('draining 1')", timeout=10_000)
            assert await page.evaluate("document.body.dataset.liveReadAt") != read_before
            assert await page.inner_text(badge("ready")) == "ready 2"

            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shot = SCREENSHOTS / "live-cluster.png"
            await page.screenshot(path=str(shot), full_page=True)
            print(f"\nlive cluster page screenshot: {shot}")
            assert shot.stat().st_size > 10_000

            # Never cached.
            data = await page.request.get(f"{server.url}/admin/cluster/data")
            assert data.ok and "no-cache" in data.headers["cache-control"], data.headers
            await browser.close()

    # Staff only.
    anonymous = httpx.get(f"{server.url}/admin/cluster/data", follow_redirects=False, timeout=10)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous.headers["location"]

"""The benchmark's lean load generator (wrk with `bench/wrk/jobs.lua`) drives the real REST job calls: every
job it submits ends DONE on the server, long-polls included, and its counts agree with the server's own.

A real uvicorn process, real simulated nodes over WebSockets, the suite's Redis, and Debian's wrk.
"""

from __future__ import annotations

import asyncio

import pytest

from bench import wrk
from core.redis import get_redis, keys
from nodes.simulator import Fleet, SimulatedNodeConfig
from tests.jobs.support import AUDIO
from tests.support.tools import require_tool

pytestmark = pytest.mark.django_db(transaction=True)


async def test_wrk_submits_jobs_that_end_done_and_counts_them_as_the_server_does(start_job_server, node_token, jobs_key) -> None:
    require_tool("wrk")
    server = start_job_server(server="uvicorn")
    # Nodes that answer after 1.5 s, with a 1 s wait: every job needs at least one GET long-poll as well.
    config = SimulatedNodeConfig(url=f"{server.ws_url}/ws/node", token=node_token, processing_ms=1500, max_concurrent_jobs=4, seed=5)
    fleet = Fleet.uniform(2, config)
    await fleet.start()
    try:
        # Generous waits: this runs beside the rest of the suite on a busy machine.
        await fleet.wait_until_registered(timeout=30)
        for node in fleet.nodes:
            await node.send_heartbeat()
        await fleet.wait_until_status("ready", timeout=30)
        body = {"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO}
        run = wrk.Wrk(wrk.WrkConfig(server.url, jobs_key, body, connections=4, duration_s=4, wait_s=1)).start()
        counts = await asyncio.get_running_loop().run_in_executor(None, run.finish)
        await asyncio.sleep(2)  # jobs wrk left unfinished at its end still end on the server
    finally:
        await fleet.stop()

    done_on_server = int(await get_redis().hget(keys().stats_counters, "ended:DONE") or 0)
    assert counts["done"] > 0
    assert counts["polls"] >= counts["done"]
    assert (counts["errors"], counts["other"], counts["socket_errors"]) == (0, 0, 0)
    # The server ended at least what wrk saw end (and those still in flight when wrk stopped).
    assert done_on_server >= counts["done"]
    assert done_on_server <= counts["done"] + 4

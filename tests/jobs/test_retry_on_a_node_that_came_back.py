"""The retry rule: a node whose attempt ended because it went away (NODE_OFFLINE, DISPATCH_FAILED) may take
the retry when no untried node has capacity; a node that answered the job with an error may not. A job that
still fails names every attempt's cause. Nodes here behave like the real lingua agent (no job_ack, null node
id on first connect, a job id seen before in the same process refused)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from nodes import services
from nodes.simulator import SimulatedNode, SimulatedNodeConfig
from tests.jobs.support import AUDIO

pytestmark = pytest.mark.django_db(transaction=True)


@asynccontextmanager
async def agent(server, token: str, **config: Any) -> AsyncIterator[SimulatedNode]:
    """One agent-like node, registered and ready; stopped on exit (a second stop is harmless)."""
    node = SimulatedNode(SimulatedNodeConfig(url=f"{server.ws_url}/ws/node", token=token, **config))
    await node.start()
    try:
        await node.wait_for(lambda: node.last_status == "ready", timeout=10)
        yield node
    finally:
        await node.stop()


async def submit(api: httpx.AsyncClient) -> str:
    answer = await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


def outcomes(job: dict[str, Any]) -> list[tuple[int, str | None, str, str | None]]:
    return [(a["attempt_id"], a["node_id"], a["state"], a.get("reason")) for a in job["attempts"]]


async def test_the_only_node_killed_mid_job_takes_the_retry_when_it_restarts_with_the_same_id(
    start_job_server, issue_token, jobs_key
) -> None:
    server = start_job_server()  # the default pending timeout
    token = await issue_token("bound", node_id="node-0000BEEF")
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}, timeout=30) as api:
        async with agent(server, token, processing_ms=60_000) as first:
            job_id = await submit(api)
            await first.wait_for(lambda: len(first.job_assigns) == 1)
        # The node's process is gone; a new one (nothing remembered) starts with the bound token.
        async with agent(server, token, processing_ms=50) as restarted:
            assert restarted.sent_of_type("node_register")[0]["node_id"] is None
            job = (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 20})).json()
    assert job["state"] == "DONE", job
    assert outcomes(job) == [(1, "node-0000BEEF", "FAILED", "NODE_OFFLINE"), (2, "node-0000BEEF", "DONE", None)]
    assert [assign["attempt_id"] for assign in restarted.job_assigns] == [2]


async def test_a_node_that_answered_with_an_error_is_not_given_the_retry(start_job_server, node_token, jobs_key) -> None:
    server = start_job_server(JOB_PENDING_TIMEOUT_S="1")
    headers = {"Authorization": f"Bearer {jobs_key}"}
    async with (
        agent(server, node_token, processing_ms=0, failure_rate=1.0) as node,
        httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as api,
    ):
        job_id = await submit(api)
        job = (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 10})).json()
    assert job["state"] == "FAILED"
    assert outcomes(job) == [(1, node.node_id, "FAILED", "NODE_ERROR"), (2, "", "FAILED", "NO_AVAILABLE_NODE")]
    assert job["error"] == {
        "code": "NO_AVAILABLE_NODE",
        "message": f"attempt 1 ({node.node_id}): NODE_ERROR; attempt 2: no node had capacity in time",
    }
    assert len(node.job_assigns) == 1


async def test_a_job_whose_node_never_came_back_fails_naming_the_node_going_offline(
    start_job_server, node_token, jobs_key
) -> None:
    server = start_job_server(JOB_PENDING_TIMEOUT_S="1")
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}, timeout=30) as api:
        async with agent(server, node_token, processing_ms=60_000) as node:
            job_id = await submit(api)
            await node.wait_for(lambda: len(node.job_assigns) == 1)
        job = (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 10})).json()
    assert job["state"] == "FAILED"
    # Its pool emptied when it went offline: the last selection's reason, after the real cause.
    assert job["error"] == {
        "code": "POOL_EMPTY",
        "message": f"attempt 1 ({node.node_id}): NODE_OFFLINE; attempt 2: no node serves these languages",
    }


async def test_a_node_that_reconnects_in_the_same_process_refuses_the_retried_job_and_is_not_asked_again(
    start_job_server, node_token, jobs_key
) -> None:
    server = start_job_server(JOB_PENDING_TIMEOUT_S="2")
    headers = {"Authorization": f"Bearer {jobs_key}"}
    async with (
        agent(server, node_token, processing_ms=60_000, reconnect_initial_s=0.1) as node,
        httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as api,
    ):
        job_id = await submit(api)
        await node.wait_for(lambda: len(node.job_assigns) == 1)
        await services.disconnect_node(node.node_id, "tester")  # the same process reconnects
        job = (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 15})).json()
    assert job["state"] == "FAILED", job
    assert outcomes(job) == [
        (1, node.node_id, "FAILED", "NODE_OFFLINE"),
        (2, node.node_id, "FAILED", "NODE_ERROR"),
        (3, "", "FAILED", "NO_AVAILABLE_NODE"),
    ]
    assert job["attempts"][1]["node_error"]["message"].startswith("DUPLICATE_JOB_ID")
    assert job["error"]["message"] == (
        f"attempt 1 ({node.node_id}): NODE_OFFLINE; attempt 2 ({node.node_id}): NODE_ERROR; "
        "attempt 3: no node had capacity in time"
    )
    assert node.duplicates_seen == 1

"""The REST API writes every point in time one way, ISO 8601 in UTC with milliseconds (docs/time.md), for one
job and for the history alike; the latencies a client asks about come as `durations_ms`."""

from __future__ import annotations

import re

import httpx
from channels.db import database_sync_to_async

from core import audit
from tests.jobs.support import AUDIO, ready_node, result_for

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def test_one_job_and_the_history_give_times_as_iso_8601_with_milliseconds(server, node_token, jobs_key):
    wire, node_id = await ready_node(server, node_token)
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        submitted = (await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})).json()
        assert ISO_MS.match(submitted["created_at"]), submitted
        assign = await wire.expect("job_assign")
        await wire.send(result_for(assign, node_id))
        job = (await api.get(f"/api/v1/jobs/{submitted['job_id']}", params={"wait": 5})).json()
        assert job["state"] == "DONE"
        assert ISO_MS.match(job["created_at"]) and job["created_at"] == submitted["created_at"]
        assert set(job["timings"]) >= {"created_at", "dispatched_at", "ended_at"}
        assert all(ISO_MS.match(value) for value in job["timings"].values()), job["timings"]
        assert 0 <= job["durations_ms"]["to_dispatch"] <= job["durations_ms"]["total"], job["durations_ms"]
        assert all(ISO_MS.match(job["attempts"][0][name]) for name in ("started_at", "ended_at")), job["attempts"]

        await database_sync_to_async(audit.drain)()
        history = (await api.get("/api/v1/jobs")).json()["jobs"]
        assert history[0]["created_at"] == job["created_at"]
        assert ISO_MS.match(history[0]["ended_at"]) and ISO_MS.match(history[0]["attempts"][0]["started_at"])
    await wire.close()

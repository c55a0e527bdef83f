"""`limit` on GET /api/v1/jobs sets the page size (it used to be ignored), and a limit out of range is a 400
that names the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from channels.db import database_sync_to_async

from jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


async def test_limit_sets_the_page_size_and_the_cursor_continues_after_it(server, jobs_key):
    start = datetime(2025, 3, 1, tzinfo=UTC)
    for index in range(5):
        await database_sync_to_async(Job.objects.create)(
            job_id=f"job-{index}", state="DONE", created_at=start + timedelta(seconds=index)
        )
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        first = (await api.get("/api/v1/jobs", params={"limit": 2})).json()
        assert [job["job_id"] for job in first["jobs"]] == ["job-4", "job-3"]
        second = (await api.get("/api/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]})).json()
        assert [job["job_id"] for job in second["jobs"]] == ["job-2", "job-1"]

        refused = await api.get("/api/v1/jobs", params={"limit": 0})
        assert refused.status_code == 400
        assert refused.json()["error"]["details"]["field"] == "limit"
        unknown_state = await api.get("/api/v1/jobs", params={"state": "done"})
        assert unknown_state.status_code == 400 and unknown_state.json()["error"]["details"]["field"] == "state"

"""A cancelled job carries who cancelled it, in the API and in the history the admin shows (it used to show
`Error: None`)."""

from __future__ import annotations

import httpx
from channels.db import database_sync_to_async
from django.test import Client
from django.urls import reverse

from access.models import ApiKey
from core import audit
from jobs.models import Job
from tests.jobs.support import AUDIO, ready_node


async def test_the_api_and_the_admin_say_who_cancelled_a_job(server, node_token, jobs_key, admin_user):
    wire, _ = await ready_node(server, node_token)
    key_id = jobs_key.split(".", 1)[0]
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        job_id = (await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})).json()["job_id"]
        await wire.expect("job_assign")
        cancelled = (await api.post(f"/api/v1/jobs/{job_id}/cancel")).json()
    assert cancelled["state"] == "CANCELLED"
    assert cancelled["error"] == {"code": "CANCELLED", "message": f"cancelled by apikey:{key_id}"}
    assert await database_sync_to_async(ApiKey.objects.filter(pk=key_id).exists)()

    await database_sync_to_async(audit.drain)()
    row = await database_sync_to_async(Job.objects.get)(pk=job_id)
    assert row.error == cancelled["error"]

    def admin_page() -> str:
        client = Client()
        client.force_login(admin_user)
        return client.get(reverse("admin:jobs_job_change", args=[job_id])).content.decode()

    page = await database_sync_to_async(admin_page)()
    assert f"CANCELLED: cancelled by apikey:{key_id}" in page
    assert "None" not in page.split('id="content"')[1].split("</fieldset>")[0]
    await wire.close()

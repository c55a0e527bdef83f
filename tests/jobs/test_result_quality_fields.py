"""The real node's ASR quality report (`asr_quality_level`, `quality_score`, `reason_codes`, `rerun_count`,
`segments_meta`) is kept with the job's result."""

from __future__ import annotations

import httpx
import pytest

from nodes.simulator import SIMULATED_QUALITY_SCORE
from tests.jobs.support import AUDIO, ready_fleet

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_quality_fields_of_a_result_are_kept_with_it(server, node_token, jobs_key) -> None:
    headers = {"Authorization": f"Bearer {jobs_key}"}
    async with (
        ready_fleet(server.ws_url, node_token, 1, processing_ms=0) as fleet,
        httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as api,
    ):
        answer = await api.post(
            "/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO}, params={"wait": 10}
        )
        job_id = answer.json()["job_id"]
        job = (await api.get(f"/api/v1/jobs/{job_id}")).json()
    [sent] = fleet.nodes[0].sent_of_type("job_result")
    assert job["state"] == "DONE"
    result = job["result"]
    assert result["asr_quality_level"] == "good"
    assert result["quality_score"] == SIMULATED_QUALITY_SCORE
    assert result["reason_codes"] == []
    assert result["rerun_count"] == 0
    assert result["segments_meta"] == sent["segments_meta"]

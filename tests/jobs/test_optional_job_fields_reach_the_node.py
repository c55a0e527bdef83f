"""Every optional job field PROTOCOL lists for `job_assign` reaches the node unchanged, through a node client
that behaves like the real lingua agent (null node id on first connect, no job_ack, duplicate job ids refused)."""

from __future__ import annotations

import httpx
import pytest

from tests.jobs.support import AUDIO, ready_fleet

pytestmark = pytest.mark.django_db(transaction=True)

OPTIONAL_FIELDS = {
    "dialect": "zh-CN",
    "features": {"emotion_detection": True, "speech_rate_detection": False},
    "mode": "two_way_auto",
    "lang_a": "zh",
    "lang_b": "en",
    "auto_langs": ["zh", "en"],
    "enable_streaming_asr": True,
    "partial_update_interval_ms": 1000,
    "padding_ms": 220,
    "turn_id": "turn-7f3a",
    "context_text": "上一句：今天天气很好",
    "group_id": "group-1",
    "part_index": 2,
    "is_manual_cut": True,
    "is_timeout_triggered": True,
    "is_max_duration_triggered": False,
}


async def test_every_optional_field_reaches_the_job_assign_unchanged_and_the_job_completes(
    server, node_token, jobs_key
) -> None:
    async with ready_fleet(server.ws_url, node_token, 1, processing_ms=50) as fleet:
        [node] = fleet.nodes
        assert node.sent_of_type("node_register")[0]["node_id"] is None
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}, timeout=30) as api:
            body = {"src_lang": "auto", "tgt_lang": "zh", "audio": AUDIO, **OPTIONAL_FIELDS}
            answer = await api.post("/api/v1/jobs", json=body, params={"wait": 10})
        job = answer.json()
        assert (answer.status_code, job["state"]) == (200, "DONE"), job
        [assign] = node.job_assigns
        assert {name: assign.get(name) for name in OPTIONAL_FIELDS} == OPTIONAL_FIELDS
        assert node.sent_of_type("job_ack") == []


async def test_fields_outside_the_protocol_are_not_sent_to_the_node(server, node_token, jobs_key) -> None:
    async with ready_fleet(server.ws_url, node_token, 1, processing_ms=0) as fleet:
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}, timeout=30) as api:
            body = {"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO, "room_id": "r-1", "lang_a": "en"}
            answer = await api.post("/api/v1/jobs", json=body, params={"wait": 10})
        assert answer.json()["state"] == "DONE"
        [assign] = fleet.nodes[0].job_assigns
        assert assign["lang_a"] == "en"
        assert "room_id" not in assign

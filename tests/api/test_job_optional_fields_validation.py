"""The optional job_assign fields of `POST /api/v1/jobs` are validated before anything is stored: a bad one is
a 400 naming the field (UNKNOWN_LANGUAGE for a language code), logged and counted, and no job exists."""

from __future__ import annotations

from typing import Any

import pytest

from core.redis import get_redis
from tests.api.conftest import KeyClient, metric
from tests.jobs.support import AUDIO

pytestmark = pytest.mark.django_db(transaction=True)

JOBS = "/api/v1/jobs"


@pytest.fixture
async def submitter(issue_key) -> KeyClient:
    return KeyClient(await issue_key("jobs:write", "jobs:read"))


async def post(client: KeyClient, **fields: Any):  # type: ignore[no-untyped-def]
    body = {"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO, **fields}
    return await client.post(JOBS, body, content_type="application/json")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"lang_a": "qq"}, "lang_a"),
        ({"lang_b": "english"}, "lang_b"),
        ({"auto_langs": ["en", "xx"]}, "auto_langs.1"),
    ],
)
async def test_an_unknown_language_code_is_a_400_unknown_language_naming_the_field(
    submitter: KeyClient, fields: dict[str, Any], named: str
) -> None:
    refused_before = await metric("scheduler_api_errors_total", code="UNKNOWN_LANGUAGE")

    response = await post(submitter, **fields)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["details"]) == ("UNKNOWN_LANGUAGE", {"field": named})
    assert await metric("scheduler_api_errors_total", code="UNKNOWN_LANGUAGE") == refused_before + 1
    assert await get_redis().keys("*job*") == []


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"mode": "three_way"}, "mode"),
        ({"enable_streaming_asr": "yes"}, "enable_streaming_asr"),
        ({"enable_streaming_asr": 1}, "enable_streaming_asr"),
        ({"partial_update_interval_ms": 10}, "partial_update_interval_ms"),
        ({"partial_update_interval_ms": "1000"}, "partial_update_interval_ms"),
        ({"padding_ms": -1}, "padding_ms"),
        ({"padding_ms": 10_001}, "padding_ms"),
        ({"part_index": -1}, "part_index"),
        ({"features": {"emotion_detection": "on"}}, "features.emotion_detection"),
        ({"features": ["emotion_detection"]}, "features"),
        ({"auto_langs": "en"}, "auto_langs"),
        ({"auto_langs": ["en"] * 17}, "auto_langs"),
        ({"dialect": ""}, "dialect"),
        ({"dialect": "x" * 33}, "dialect"),
        ({"turn_id": 7}, "turn_id"),
        ({"context_text": "x" * 4001}, "context_text"),
        ({"group_id": "g" * 129}, "group_id"),
        ({"is_manual_cut": "true"}, "is_manual_cut"),
        ({"is_timeout_triggered": 0}, "is_timeout_triggered"),
        ({"is_max_duration_triggered": None, "lang_a": 5}, "lang_a"),
    ],
)
async def test_a_mistyped_or_out_of_range_optional_field_is_a_400_naming_it(
    submitter: KeyClient, fields: dict[str, Any], named: str
) -> None:
    response = await post(submitter, **fields)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert [f["field"] for f in error["details"]["fields"]] == [named]
    assert named in error["message"]
    assert await get_redis().keys("*job*") == []

"""A language code in upper case is refused with a hint at the code meant, not just "unknown language"."""

from __future__ import annotations

import httpx
import pytest

from tests.jobs.support import AUDIO

pytestmark = pytest.mark.django_db(transaction=True)


async def test_an_upper_case_language_code_is_refused_with_the_lower_case_one_suggested(server, jobs_key):
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        answer = await api.post("/api/v1/jobs", json={"src_lang": "EN", "tgt_lang": "zh", "audio": AUDIO})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "UNKNOWN_LANGUAGE" and error["details"]["field"] == "src_lang"
    assert "did you mean 'en'" in error["message"]

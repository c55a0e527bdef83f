"""`GET /api/v1/jobs?since=`: any ISO 8601 time the schema admits gets an answer, never a 500. The schema
fuzzer found `+16:38`, an offset PostgreSQL refuses; the time is moved to UTC before the query, and a time
that cannot be moved is refused by name."""

from __future__ import annotations

import pytest

from access.models import Scope
from tests.api.conftest import KeyClient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("since", ["7493-09-17T08:41:25+16:38", "2026-11-29T10:00:00-23:59", "2026-11-29T10:00:00Z"])
async def test_any_offset_gets_a_listing(issue_key, since):
    api = KeyClient(await issue_key(Scope.JOBS_READ))
    answer = await api.get("/api/v1/jobs", data={"since": since})
    assert answer.status_code == 200, answer.text
    assert answer.json()["jobs"] == []


async def test_a_time_that_cannot_be_moved_to_utc_is_refused_by_name(issue_key):
    api = KeyClient(await issue_key(Scope.JOBS_READ))
    answer = await api.get("/api/v1/jobs", data={"since": "9999-12-31T23:59:59-10:00"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["details"] == {"field": "since"}

"""A read that needs the database while it is unavailable (a job Redis no longer holds is answered from the
mirror) is a 503 DEPENDENCY_DOWN naming the database, with Retry-After, not a 500."""

from __future__ import annotations

import pytest
from django.db import OperationalError

from jobs import reconcile
from tests.api.conftest import KeyClient

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_job_read_from_the_mirror_while_the_database_is_down_is_503_naming_the_database(
    issue_key, monkeypatch
) -> None:
    reader = KeyClient(await issue_key("jobs:read"))

    def database_gone(job_id: str) -> dict:
        raise OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(reconcile, "ended_view", database_gone)
    answer = await reader.get("/api/v1/jobs/job-not-in-redis")

    assert answer.status_code == 503
    assert answer["Retry-After"] == "5"
    assert answer.json()["error"]["code"] == "DEPENDENCY_DOWN"
    assert answer.json()["error"]["details"] == {"dependency": "database"}

"""Every status the API answers is one its OpenAPI document lists for that operation: schemathesis draws
requests that follow the document and requests that break it, for every operation, against a real server."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.openapi import from_url

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES_PER_OPERATION = 10


def capped_wait(case) -> None:  # type: ignore[no-untyped-def]
    # A drawn long-poll of up to 30 s would only make the run slow; the status it ends in is the same.
    if case.query and "wait" in case.query:
        case.query["wait"] = "0.05"


# A few hundred requests against one server process on a shared two-core machine.
@pytest.mark.timeout(400)
def test_every_answered_status_is_documented_for_its_operation(server, api_key, node_token, capsys):
    schema = from_url(f"{server.url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: Counter[int] = Counter()
    undocumented: list[str] = []

    def fuzz(operation) -> None:  # type: ignore[no-untyped-def]
        secret = node_token if "/node-link" in operation.path else api_key
        documented = set(operation.definition.raw["responses"])
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
        )

        @settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=strategy)
        def call(case) -> None:  # type: ignore[no-untyped-def]
            capped_wait(case)
            response = case.call(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=15)
            statuses[response.status_code] += 1
            if str(response.status_code) not in documented:
                undocumented.append(f"{operation.label} -> {response.status_code}: {response.text[:120]}")

        call()

    for operation in operations:
        fuzz(operation)

    with capsys.disabled():
        print("\nstatus conformance: " + ", ".join(f"{code} x{count}" for code, count in sorted(statuses.items())))
    assert len(operations) >= 10
    assert sum(statuses.values()) >= len(operations) * 5
    assert undocumented == []

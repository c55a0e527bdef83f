"""Schemathesis over the REST API's own OpenAPI document, against a real server process: for every operation,
cases that follow the schema and cases that break it (wrong types, missing fields, bad paths and queries),
with a valid API key (a node token for the node link). No answer may be a 5xx, every answered status must be
one the document lists for that operation (status-code conformance), and the server logs no error.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.openapi import from_url

from tests.fuzz.conftest import error_lines, read_log

EXAMPLES_PER_OPERATION = 12
# Long-polls are capped so a drawn `wait=30` costs a moment, not half a minute; other values stay as drawn.
SHORT_WAIT = "0.05"


def shortened_wait(value: object) -> object:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return value
    return SHORT_WAIT if 0 < seconds <= 30 else value


@pytest.fixture
def server(start_server):  # type: ignore[no-untyped-def]
    return start_server()


# Drawing cases from the schema is CPU work: on a loaded 2-core machine it outlasts the suite's 120 s default.
@pytest.mark.timeout(360)
def test_no_request_drawn_from_the_openapi_document_gets_a_5xx(server, api_key: str, node_token: str, record_property) -> None:  # type: ignore[no-untyped-def]
    schema = from_url(f"{server.url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    cases: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    server_errors: list[str] = []
    undocumented: list[str] = []

    def fuzz(operation) -> None:  # type: ignore[no-untyped-def]
        secret = node_token if "/node-link" in operation.path else api_key
        documented = set(operation.definition.raw["responses"])
        strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def call(case) -> None:  # type: ignore[no-untyped-def]
            if case.query and "wait" in case.query:
                case.query["wait"] = shortened_wait(case.query["wait"])
            response = case.call(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=15)
            cases[operation.label] += 1
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                server_errors.append(f"{operation.label} -> {response.status_code}: {response.text[:200]} for {case!r:.300}")
            if str(response.status_code) not in documented:
                undocumented.append(f"{operation.label} -> {response.status_code}: {response.text[:120]}")

        call()

    for operation in operations:
        fuzz(operation)

    record_property("fuzz_cases", f"REST API: {sum(cases.values())} requests over {len(operations)} operations (statuses "
                    + ", ".join(f"{status} x{count}" for status, count in sorted(statuses.items())) + ")")  # fmt: skip
    assert len(operations) >= 10
    assert all(cases[operation.label] > 0 for operation in operations)
    assert server_errors == []
    assert undocumented == []
    assert server.is_running()
    assert error_lines(read_log(server.log_path)) == []

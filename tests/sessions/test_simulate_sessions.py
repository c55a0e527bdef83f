"""`simulate_sessions` plays web clients against a real server and reports what came back."""

from __future__ import annotations

import io
import json

import pytest
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command

from tests.jobs.support import ready_fleet

pytestmark = pytest.mark.django_db(transaction=True)


def simulate(**options) -> dict:
    out = io.StringIO()
    call_command("simulate_sessions", json=True, stdout=out, **options)
    return json.loads(out.getvalue())


async def test_simulated_sessions_stream_utterances_and_every_one_is_translated(server, node_token, sessions_key):
    async with ready_fleet(server.ws_url, node_token, 2, processing_ms=0, max_concurrent_jobs=8):
        summary = await sync_to_async(simulate, thread_sensitive=False)(
            url=f"{server.ws_url}/ws/session", key=sessions_key, count=3, utterances=2, chunks=2, fast=True
        )
    assert (summary["sessions"], summary["connected"], summary["utterances"]) == (3, 3, 6)
    assert summary["translated"] == 6 and summary["unanswered"] == 0 and summary["errors"] == 0
    assert summary["latency_ms"]["p99"] is not None


async def test_simulated_sessions_in_real_time_send_chunks_at_the_pace_of_speech(server, node_token, sessions_key):
    async with ready_fleet(server.ws_url, node_token, 1, processing_ms=0):
        summary = await sync_to_async(simulate, thread_sensitive=False)(
            url=f"{server.ws_url}/ws/session", key=sessions_key, count=2, utterances=1, chunks=3, silence=0.1
        )
    assert summary["translated"] == 2
    assert summary["elapsed_s"] >= 0.7, "3 chunks 256 ms apart"


async def test_a_refused_key_fails_the_command_saying_why(server):
    # A tool that could not connect says so and exits non-zero (CommandError), like simulate_nodes.
    with pytest.raises(CommandError, match=r"no session could connect to ws://.*/ws/session: .*403"):
        await sync_to_async(simulate, thread_sensitive=False)(
            url=f"{server.ws_url}/ws/session", key="ak_unknown.secret", count=1, utterances=1, fast=True
        )

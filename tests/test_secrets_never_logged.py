"""Secrets and audio never reach a log line: a whole session of a server at DEBUG level is searched. The same
session shows the log format: JSON lines whose job lines carry the job, attempt, node and trace ids."""

from __future__ import annotations

import base64
import json
import secrets

import httpx
import pytest

from access.models import ApiKey, Scope
from nodes.models import NodeToken
from tests.factories import heartbeat_message
from tests.support.wire import Wire

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def node_token(transactional_db) -> str:
    return NodeToken.issue("log test")[1]


async def test_a_token_an_api_key_and_an_audio_payload_never_appear_in_the_server_log(start_server, node_token):
    server = start_server(LOG_LEVEL="DEBUG", ACCESS_LOG="true", NODE_HEARTBEAT_TIMEOUT_S="60")
    key = await _issue_key()
    audio_marker = secrets.token_hex(16)
    audio = base64.b64encode(audio_marker.encode() * 8).decode()

    wire = await Wire.connect(server.ws_url, node_token)
    node_id = (await wire.register())["node_id"]
    await wire.send(heartbeat_message(node_id))
    await wire.expect("node_status")
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as api:
        job_id = (
            await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": audio, "trace_id": "trace-log-1"})
        ).json()["job_id"]
        assign = await wire.expect("job_assign")
        await wire.send({"type": "job_result", "job_id": job_id, "attempt_id": assign["attempt_id"], "node_id": node_id,
                         "success": True, "tts_audio": audio, "text_asr": "x"})  # fmt: skip
        assert (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 5})).json()["state"] == "DONE"
        # A bad key and a bad token are logged by id only.
        await api.get("/api/v1/jobs", headers={"Authorization": "Bearer ak_000000000000.wrong-secret-value"})
    await wire.close()

    log = server.log_text()
    assert node_id in log and "ak_" in log  # the log did record this session
    for secret in (node_token.partition(".")[2], key.partition(".")[2], "wrong-secret-value", audio, audio[:40]):
        assert secret not in log

    not_json = [line for line in log.splitlines() if line.strip() and not line.startswith("{")]
    assert not not_json, not_json
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert all({"timestamp", "level", "logger", "event", "message", "instance"} <= line.keys() for line in lines)
    access = [line["message"] for line in lines if line["logger"] == "scheduler.access"]
    assert any("WSCONNECT /ws/node" in message for message in access), access  # the node connected with ?token=
    job_lines = {line["event"]: line for line in lines if line.get("job_id") == job_id}
    for event in ("job_dispatched", "job_ended"):
        line = job_lines[event]
        assert (line["trace_id"], line["node_id"], line["attempt_id"]) == ("trace-log-1", node_id, "1"), line


async def _issue_key() -> str:
    from channels.db import database_sync_to_async

    return (await database_sync_to_async(ApiKey.issue)("log test", [Scope.JOBS_WRITE, Scope.JOBS_READ]))[1]


def test_a_credential_in_a_query_string_is_masked_whoever_logs_it():
    from core.logs import redact

    line = '127.0.0.1:5000 - "WebSocket /ws/node?token=nt_ab12.s3cr3t&x=1" [accepted]'
    assert redact(line) == '127.0.0.1:5000 - "WebSocket /ws/node?token=[redacted]&x=1" [accepted]'
    assert redact("GET /api/v1/jobs?api_key=ak_1.zzz HTTP/1.1") == "GET /api/v1/jobs?api_key=[redacted] HTTP/1.1"

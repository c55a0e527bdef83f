"""The HTTP node link (PROTOCOL.md section 2): the node protocol over POSTs, answered with the same frames."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient
from django.utils import timezone

from core.redis import get_redis, keys
from nodes.models import NodeToken
from tests import factories
from tests.api.conftest import LINK, DispatchReceiver, HttpNode, metric

pytestmark = pytest.mark.django_db(transaction=True)


async def test_an_http_node_registers_and_its_first_healthy_heartbeat_makes_it_ready(
    http_node: HttpNode,
) -> None:
    response = await http_node.register()

    assert response.status_code == 200
    ack = response.json()
    assert ack["type"] == "node_register_ack"
    assert ack["status"] == "registering"
    assert ack["message"]
    assert ack["node_id"].startswith("node-")

    heartbeat = await http_node.heartbeat()
    assert heartbeat.status_code == 200
    assert heartbeat.json() == {"accepted": "node_heartbeat", "node_id": ack["node_id"], "status": "ready"}
    meta = await get_redis().hgetall(keys().node_meta(ack["node_id"]))
    assert meta["transport"] == "http"
    assert meta["dispatch_url"] == http_node.dispatch_url


async def test_the_scheduler_posts_the_status_change_to_the_dispatch_url(
    http_node: HttpNode, receiver: DispatchReceiver
) -> None:
    node_id = await http_node.become_ready()

    frame = await receiver.wait_for(lambda f: f["type"] == "node_status")
    assert frame == {"type": "node_status", "node_id": node_id, "status": "ready", "reason": "heartbeat"}


async def test_the_register_body_may_omit_type(http_node: HttpNode) -> None:
    body = factories.register_message(dispatch_url=http_node.dispatch_url)
    del body["type"]

    response = await http_node.client.post(
        f"{LINK}/register", body, content_type="application/json", headers=http_node.headers
    )

    assert response.status_code == 200
    assert response.json()["type"] == "node_register_ack"


async def test_a_reregistering_node_keeps_its_id(http_node: HttpNode) -> None:
    node_id = await http_node.become_ready()

    response = await http_node.register()

    assert response.status_code == 200
    assert response.json()["node_id"] == node_id


async def test_register_without_a_token_is_refused_with_an_unauthorized_frame(http_node: HttpNode) -> None:
    http_node.token = None

    response = await http_node.register()

    assert response.status_code == 401
    assert response.json()["type"] == "error"
    assert response.json()["code"] == "UNAUTHORIZED"


async def test_an_api_key_is_not_a_node_token(http_node: HttpNode, issue_key) -> None:
    http_node.token = await issue_key("nodes:write")

    response = await http_node.register()

    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHORIZED"


async def test_a_revoked_node_token_is_refused(http_node: HttpNode) -> None:
    await http_node.become_ready()
    token_id = http_node.token.partition(".")[0]
    await database_sync_to_async(NodeToken.objects.filter(pk=token_id).update)(revoked_at=timezone.now())

    response = await http_node.heartbeat()

    assert response.status_code == 401
    assert response.json() == {
        "type": "error",
        "code": "UNAUTHORIZED",
        "message": "unknown, expired or revoked node token",
    }


async def test_tokenless_nodes_register_when_the_deployment_allows_them(
    http_node: HttpNode, settings
) -> None:
    settings.NODE_AUTH_REQUIRED = False
    http_node.token = None

    node_id = await http_node.become_ready()

    assert node_id.startswith("node-")


async def test_a_bad_token_is_refused_even_in_tokenless_mode(http_node: HttpNode, settings) -> None:
    settings.NODE_AUTH_REQUIRED = False
    http_node.token = "nt_000000000000.wrong"

    response = await http_node.register()

    assert response.status_code == 401


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"capability_schema_version": "1.0"}, "INVALID_CAPABILITY_SCHEMA"),
        ({"hardware": {"cpu_cores": 8, "memory_gb": 16}}, "NO_GPU_AVAILABLE"),
        ({"node_id": "bad id with spaces"}, "BAD_MESSAGE"),
    ],
)
async def test_a_rejected_registration_answers_400_with_the_sockets_error_frame(
    http_node: HttpNode, overrides: dict, code: str
) -> None:
    response = await http_node.register(**overrides)

    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["code"] == code


async def test_register_requires_an_http_dispatch_url(http_node: HttpNode) -> None:
    for url in (None, "ftp://example.org/x", "not a url"):
        http_node.dispatch_url = url

        response = await http_node.register()

        assert response.status_code == 400
        assert response.json()["code"] == "BAD_MESSAGE"
        assert response.json()["details"]["fields"][0]["field"] == "dispatch_url"


async def test_a_register_missing_a_required_field_names_the_field(http_node: HttpNode) -> None:
    body = factories.register_message(dispatch_url=http_node.dispatch_url)
    del body["platform"]

    response = await http_node.client.post(
        f"{LINK}/register", body, content_type="application/json", headers=http_node.headers
    )

    assert response.status_code == 400
    assert response.json()["code"] == "BAD_MESSAGE"
    assert {"field": "platform", "problem": "Field required"} in response.json()["details"]["fields"]


async def test_a_body_that_is_not_json_is_a_bad_message(http_node: HttpNode) -> None:
    response = await http_node.client.post(
        f"{LINK}/register", "{not json", content_type="application/json", headers=http_node.headers
    )

    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "code": "BAD_MESSAGE",
        "message": "the body is not valid JSON",
    }


async def test_an_id_of_another_tokens_node_is_a_409_conflict(http_node: HttpNode) -> None:
    node_id = await http_node.become_ready()
    other_token = await database_sync_to_async(NodeToken.issue)("other node")
    intruder = HttpNode(AsyncClient(), other_token[1], http_node.dispatch_url, node_id=node_id)

    registered = await intruder.register()
    heartbeat = await intruder.heartbeat()

    assert registered.status_code == 409
    assert registered.json()["code"] == "NODE_ID_CONFLICT"
    assert heartbeat.status_code == 409
    assert heartbeat.json()["code"] == "NODE_ID_CONFLICT"


async def test_a_token_bound_to_one_node_id_cannot_register_another(http_node: HttpNode) -> None:
    _, http_node.token = await database_sync_to_async(NodeToken.issue)("bound", node_id="node-BOUND001")

    response = await http_node.register(node_id="node-OTHER001")

    assert response.status_code == 409
    assert response.json()["code"] == "NODE_ID_CONFLICT"


async def test_a_heartbeat_for_a_node_redis_lost_asks_the_node_to_register_again(http_node: HttpNode) -> None:
    node_id = await http_node.become_ready()
    await get_redis().flushall()

    response = await http_node.heartbeat()

    assert response.status_code == 409
    assert response.json()["code"] == "REGISTER_AGAIN"
    assert (await http_node.register()).json()["node_id"] == node_id
    assert (await http_node.heartbeat()).json()["status"] == "ready"


async def test_a_message_for_a_node_never_registered_asks_to_register(http_node: HttpNode) -> None:
    response = await http_node.send(factories.heartbeat_message("node-00000000"), "node-00000000")

    assert response.status_code == 409
    assert response.json()["code"] == "REGISTER_AGAIN"


async def test_a_message_whose_node_id_differs_from_the_url_is_a_bad_message(http_node: HttpNode) -> None:
    node_id = await http_node.become_ready()

    response = await http_node.send(factories.heartbeat_message("node-FFFFFFFF"), node_id)

    assert response.status_code == 400
    assert response.json()["details"]["fields"][0]["field"] == "node_id"


async def test_an_unknown_message_type_is_a_bad_message(http_node: HttpNode) -> None:
    node_id = await http_node.become_ready()

    response = await http_node.send({"type": "node_dance", "node_id": node_id})

    assert response.status_code == 400
    assert response.json()["code"] == "BAD_MESSAGE"
    assert response.json()["details"] == {"type": "node_dance"}


async def test_node_register_is_not_taken_as_a_message(http_node: HttpNode) -> None:
    node_id = await http_node.become_ready()

    response = await http_node.send(factories.register_message(node_id=node_id))

    assert response.status_code == 400
    assert response.json()["code"] == "BAD_MESSAGE"


async def test_job_messages_are_accepted_and_change_nothing_while_jobs_do_not_exist(
    http_node: HttpNode,
) -> None:
    node_id = await http_node.become_ready()
    result = {"type": "job_result", "job_id": "job-1", "attempt_id": 1, "node_id": node_id, "success": True}

    response = await http_node.send(result)

    assert response.status_code == 202
    assert response.json() == {"accepted": "job_result", "node_id": node_id, "status": None}


async def test_a_node_error_is_taken_and_counted(http_node: HttpNode) -> None:
    node_id = await http_node.become_ready()
    before = await metric("scheduler_node_errors_reported_total", code="GPU_ERROR")

    response = await http_node.send(
        {"type": "node_error", "node_id": node_id, "code": "GPU_ERROR", "message": "lost GPU 0"}
    )

    assert response.status_code == 200
    assert await metric("scheduler_node_errors_reported_total", code="GPU_ERROR") == before + 1


async def test_a_message_above_the_size_limit_is_refused_with_413(http_node: HttpNode, settings) -> None:
    node_id = await http_node.become_ready()
    settings.NODE_MAX_MESSAGE_BYTES = 2048
    result = {
        "type": "job_result",
        "job_id": "j",
        "attempt_id": 1,
        "node_id": node_id,
        "success": True,
        "tts_audio": "A" * 4096,
    }

    response = await http_node.send(result)

    assert response.status_code == 413
    assert response.json()["code"] == "MESSAGE_TOO_LARGE"


async def test_a_message_above_djangos_upload_limit_but_within_the_node_limit_is_taken(
    http_node: HttpNode,
) -> None:
    node_id = await http_node.become_ready()
    audio = "A" * (3 * 1024 * 1024)  # above DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB), below the 4 MiB node limit
    result = {
        "type": "job_result",
        "job_id": "j",
        "attempt_id": 1,
        "node_id": node_id,
        "success": True,
        "tts_audio": audio,
    }

    response = await http_node.send(result)

    assert response.status_code == 202


async def test_the_node_link_refuses_a_header_that_is_not_bearer(http_node: HttpNode) -> None:
    response = await http_node.client.post(
        f"{LINK}/register",
        json.dumps(factories.register_message(dispatch_url=http_node.dispatch_url)),
        content_type="application/json",
        headers={"Authorization": f"Basic {http_node.token}"},
    )

    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHORIZED"

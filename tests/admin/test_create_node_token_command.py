"""`manage.py create_node_token` prints a working token once, with the URL a node connects to."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from nodes.models import NodeToken

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("create_node_token", *args, stdout=out)
    return out.getvalue()


def test_the_command_prints_a_working_token_once_with_the_node_url(settings) -> None:
    settings.WEB_HOST, settings.WEB_PORT = "10.0.0.5", 8000

    output = run("--name", "gpu-box-1")

    plaintext = re.search(r"token:\s+(\S+)", output).group(1)
    token = NodeToken.authenticate(plaintext)
    assert token is not None and token.name == "gpu-box-1" and token.node_id == ""
    assert f"ws://10.0.0.5:8000/ws/node?token={plaintext}" in output
    assert "will not be shown again" in output
    assert plaintext.split(".")[1] not in token.secret_hash


def test_the_command_binds_the_node_id_and_sets_the_expiry() -> None:
    output = run(
        "--name", "gpu-box-1", "--node-id", "node-A", "--expires-days", "30", "--host", "sched.example:443"
    )

    token = NodeToken.objects.get()
    assert token.node_id == "node-A"
    assert abs(token.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    assert "ws://sched.example:443/ws/node?token=" in output


def test_the_command_refuses_a_node_id_no_node_can_register() -> None:
    with pytest.raises(CommandError, match="--node-id"):
        run("--name", "gpu-box-1", "--node-id", "bad id!")

    assert not NodeToken.objects.exists()

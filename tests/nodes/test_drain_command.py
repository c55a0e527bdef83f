"""`manage.py drain_node`: drains and undrains a live node, refuses an unknown one with a clear message."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from core.redis import run_sync
from nodes import services
from nodes.registration import register_node
from nodes.schemas import parse_node_message
from tests.factories import reference_heartbeat, register_message

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_drains_and_undrains_a_ready_node_and_refuses_an_unknown_one():
    conn = services.Connection(token=None)
    node_id = run_sync(register_node, parse_node_message(register_message()), conn).node_id
    run_sync(services.record_heartbeat, parse_node_message(reference_heartbeat(node_id)), conn)

    out = io.StringIO()
    call_command("drain_node", node_id, "--reason", "GPU swap", stdout=out)
    assert out.getvalue().strip().startswith(f"{node_id} drained: ready -> draining")
    assert run_sync(services.get_node, node_id)["drained_by"].startswith("cli:")

    out = io.StringIO()
    call_command("drain_node", node_id, "--undo", stdout=out)
    assert f"{node_id} undrained: draining -> ready" in out.getvalue()

    with pytest.raises(CommandError, match="No node 'node-00000000' is registered"):
        call_command("drain_node", "node-00000000")

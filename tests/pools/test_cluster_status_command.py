"""`manage.py cluster_status`: instances, leader and epoch, pools with live sizes and nodes by status, read
from Redis; a clear failure when Redis is down."""

from __future__ import annotations

import os
import re
import socket
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from core.redis import get_sync_redis, keys, run_sync
from nodes import services
from pools.leader import Leader
from scheduler import background
from tests.conftest import point_at_redis
from tests.pools.test_pool_membership import start

pytestmark = pytest.mark.django_db(transaction=True)


def cluster_status() -> str:
    out = StringIO()
    call_command("cluster_status", stdout=out)
    return out.getvalue()


def line_starting(output: str, prefix: str) -> str:
    return next(line for line in output.splitlines() if line.strip().startswith(prefix))


def test_it_shows_the_instances_the_leader_the_pools_and_the_nodes(settings) -> None:
    run_sync(background._advertise, 3)
    run_sync(start, ["en", "zh"])
    drained, _ = run_sync(start, ["en", "zh"])
    run_sync(start, ["de", "en"])
    run_sync(services.drain_node, drained, "ops")
    run_sync(Leader("celery@host-1/abc").step)

    output = cluster_status()

    assert "Instances (1):" in output
    instance = line_starting(output, settings.INSTANCE_ID).split()
    assert instance[1:3] == [socket.gethostname(), str(os.getpid())]
    assert instance[5] == "3"  # node sockets
    assert line_starting(output, "Leader:").startswith("Leader: celery@host-1/abc, epoch 1; epochs granted 1")
    assert line_starting(output, "Pool configuration:").startswith("Pool configuration: v3, epoch 1, written")
    assert re.search(r"\d+\s+en-zh\s+en,zh\s+1\s+1", output)
    assert re.search(r"\d+\s+de-en\s+de,en\s+1\s+1", output)
    assert re.search(r"0\s+overflow\s+-\s+0\s+0", output)
    assert line_starting(output, "Nodes:") == (
        "Nodes: 0 registering, 2 ready, 0 degraded, 1 draining, 0 offline (3 in all)"
    )


def test_it_says_when_no_process_holds_the_lease_and_an_instance_stopped_advertising() -> None:
    get_sync_redis().zadd(keys().instances, {"gone-instance": time.time() - 600})

    output = cluster_status()

    assert "none (no process holds the lease: pools are not rebuilt)" in output
    assert "stopped advertising" in line_starting(output, "gone-instance")
    assert "10 min ago" in line_starting(output, "gone-instance")
    assert "Pool configuration: v0, epoch 0, written never" in output


def test_with_redis_down_it_fails_saying_so(settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    point_at_redis(settings, f"redis://:secret@127.0.0.1:{port}/0")

    with pytest.raises(CommandError, match=f"Redis at 127.0.0.1:{port}/0 is unavailable") as refused:
        cluster_status()

    assert "secret" not in str(refused.value)

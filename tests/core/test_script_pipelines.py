"""Scripts sent inside pipelines (`core.scripts.run_pipeline`): one round trip with the commands beside them,
and a script Redis lost (restart, SCRIPT FLUSH) is loaded and the pipeline sent again instead of failing."""

from __future__ import annotations

import pytest
import redis

from core import scripts
from core.redis import get_redis, keys


async def test_a_pipeline_whose_script_redis_lost_is_sent_again_after_loading_it():
    client = get_redis()
    lock = keys().lock("pipeline-test")
    await client.set(lock, "me")
    await client.set("beside", "1")
    await client.script_flush()

    def build(pipe) -> None:
        scripts.queue(pipe, "lock_release", [lock], ["me"])
        pipe.get("beside")

    assert await scripts.run_pipeline("test", build) == [1, "1"]
    assert await client.exists(lock) == 0
    assert await client.script_exists(scripts.sha("lock_release")) == [True]


async def test_a_script_error_inside_a_pipeline_is_raised_after_the_others_ran():
    client = get_redis()
    await client.set("a-string", "x")

    def build(pipe) -> None:
        pipe.set("beside", "2")
        # node_slot's ZREM on a key holding a string: Redis answers WRONGTYPE.
        scripts.queue(pipe, "node_slot", ["a-string", "a-string"], ["release", "m", 0])

    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await scripts.run_pipeline("test", build)
    assert await client.get("beside") == "2"

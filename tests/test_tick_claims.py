"""Periodic whole-cluster work of the web processes (the node deadline sweep) runs once per interval across
all instances, not once per process: the first instance to claim the interval does it. Real Redis."""

from __future__ import annotations

import asyncio

from scheduler import background


async def test_only_the_first_instance_to_ask_wins_an_interval(settings) -> None:
    won = await asyncio.gather(*(background.claim_tick("node_sweep", 60.0) for _ in range(4)))

    assert sorted(won) == [False, False, False, True]


async def test_the_next_interval_can_be_won_again(settings) -> None:
    assert await background.claim_tick("node_sweep", 5.0, now=1000.0)
    assert not await background.claim_tick("node_sweep", 5.0, now=1004.9)

    assert await background.claim_tick("node_sweep", 5.0, now=1005.0)


async def test_different_work_is_claimed_separately(settings) -> None:
    assert await background.claim_tick("node_sweep", 60.0)
    assert await background.claim_tick("other_work", 60.0)

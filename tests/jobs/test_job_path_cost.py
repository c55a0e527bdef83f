"""What one job costs Redis on the happy path (REST submit with `?wait`, selection, reservation, dispatch, the
node's result, the waiter's answer), counted on a real Redis by the harness of `python -m bench.jobpath`:
round trips from the client's side, commands (those inside scripts included) from `INFO commandstats`.
The waiter's answer costs no round trip: the step that ends the job returns it to the waiting process; the
first reservation rides with the creation, on a member this process sampled within the last second."""

from __future__ import annotations

import pytest

from bench import jobpath
from jobs import placement

pytestmark = pytest.mark.django_db(transaction=True)

JOBS = 40


@pytest.fixture(autouse=True)
def samples_stay_fresh(monkeypatch):
    # The guessed first reservation uses a sample at most GUESS_MAX_AGE_S old; on a loaded machine the
    # harness's own steps between the warm-up and the measured jobs can take longer than that, which would
    # count a fallback reservation that a steady stream of jobs does not make.
    monkeypatch.setattr(placement, "GUESS_MAX_AGE_S", 60.0)


async def test_a_job_takes_three_round_trips_and_at_most_35_redis_commands():
    cost = await jobpath.measure(JOBS, nodes=2, capacity=4, concurrency=1)
    print(jobpath.report(cost, trace=True))
    assert cost.round_trips == 3 * JOBS
    assert cost.round_trips_by_step == {"submit": 2 * JOBS, "result": 1 * JOBS}
    assert cost.commands <= 35 * JOBS


async def test_the_round_trips_are_create_with_reserve_then_dispatch_then_result():
    cost = await jobpath.measure(JOBS, nodes=2, capacity=4, concurrency=1)
    assert [(step, names[0], names[-1]) for step, names in cost.trace] == [
        ("submit", "EVALSHA(job_create)", "EVALSHA(node_reserve)"),
        ("submit", "EVALSHA(job_dispatch)", "EVALSHA(job_dispatch)"),
        ("result", "EVALSHA(job_step)", "ZREM"),
    ]


async def test_concurrent_jobs_cost_the_same_per_job_while_no_node_is_full():
    # Eight jobs in flight can never fill a node of eight slots: every first reservation succeeds. (A full
    # node costs a refused reservation, one more round trip, and the job tries the next candidate.)
    cost = await jobpath.measure(JOBS, nodes=2, capacity=8, concurrency=8)
    assert cost.round_trips == 3 * JOBS
    assert cost.commands <= 35 * JOBS

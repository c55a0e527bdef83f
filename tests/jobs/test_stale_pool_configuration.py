"""Selection reads the pool configuration this process cached and checks its version at most every second;
a job that finds nothing in an older configuration looks again in the current one before it waits."""

from __future__ import annotations

import pytest

from bench.jobpath import AUDIO, run_jobs, start_nodes
from jobs import services
from pools import services as pools

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_job_for_a_pool_created_after_the_cache_was_checked_goes_to_its_node_at_once():
    await start_nodes(1, 2)
    await run_jobs(1, 1)  # caches the configuration and checks its version
    cached = pools.cached_config()
    [newcomer] = await start_nodes(1, 2, languages=("de", "en"), name="newcomer")
    assert (await pools.current_config()).version > cached.version
    # The process still holds the older configuration, just checked: the job's sample cannot see de-en.
    pools._cache.config = cached

    submitted = await services.submit_job({"src_lang": "de", "tgt_lang": "en", "audio": AUDIO}, wait_s=5)

    assert submitted.job["state"] == "DONE"
    assert submitted.job["node_id"] == newcomer.builder.node_id
    assert submitted.job["pool"] == "de-en"


async def test_a_job_that_fits_nowhere_waits_once_the_current_configuration_says_so():
    await start_nodes(1, 2)
    await run_jobs(1, 1)

    submitted = await services.submit_job({"src_lang": "fr", "tgt_lang": "ja", "audio": AUDIO}, wait_s=0.2)

    assert submitted.job["state"] == "SELECTING"

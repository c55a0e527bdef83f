"""Which pools may serve a job: a pure function."""

from __future__ import annotations

from pools.eligibility import OVERFLOW, Pool, covers, eligible_pools

EN_ZH = Pool(1, "en-zh", ("en", "zh"), ())
DE_EN_ZH = Pool(2, "de-en-zh", ("de", "en", "zh"), ())
JA_KO = Pool(3, "ja-ko", ("ja", "ko"), ())
POOLS = (EN_ZH, DE_EN_ZH, JA_KO)


def names(pools: list[Pool]) -> list[str]:
    return [pool.name for pool in pools]


def test_a_pair_is_eligible_for_every_pool_holding_both_languages():
    assert names(eligible_pools(POOLS, "en", "zh")) == ["en-zh", "de-en-zh"]
    assert names(eligible_pools(POOLS, "zh", "en")) == ["en-zh", "de-en-zh"]


def test_a_pair_needs_both_languages_in_one_pool():
    assert names(eligible_pools(POOLS, "de", "zh")) == ["de-en-zh"]
    assert names(eligible_pools(POOLS, "de", "ja")) == []


def test_auto_source_needs_only_the_target():
    assert names(eligible_pools(POOLS, "auto", "en")) == ["en-zh", "de-en-zh"]
    assert names(eligible_pools(POOLS, "auto", "ko")) == ["ja-ko"]


def test_auto_source_is_narrowed_by_the_candidate_languages():
    assert names(eligible_pools(POOLS, "auto", "en", lang_a="de", lang_b="en")) == ["de-en-zh"]
    assert names(eligible_pools(POOLS, "auto", "zh", lang_a="en")) == ["en-zh", "de-en-zh"]


def test_the_overflow_pool_is_always_a_candidate():
    overflow = Pool(0, OVERFLOW, (), ())
    assert names(eligible_pools((*POOLS, overflow), "fr", "it")) == [OVERFLOW]


def test_a_node_covers_a_job_when_its_languages_hold_what_the_job_needs():
    assert covers(["en", "fr", "zh"], "fr", "zh")
    assert not covers(["en", "zh"], "fr", "zh")
    assert covers(["en"], "auto", "en")

"""The selection filters as a pure function: each candidate is removed by the first filter it fails."""

from __future__ import annotations

import json
from dataclasses import replace

from pools.selection import (
    REMOVAL_REASONS,
    Candidate,
    JobRequirements,
    Pipeline,
    filter_candidates,
    removal_reason,
)

EN_ZH = JobRequirements("en", "zh")
IDLE = Candidate(
    node_id="node-1",
    status="ready",
    pool="en-zh",
    languages=("en", "zh"),
    ready_services=frozenset({"asr", "nmt", "tts", "semantic"}),
    running=0,
    reserved=0,
    max_concurrent_jobs=4,
)


def test_a_ready_idle_node_that_speaks_the_languages_survives():
    selection = filter_candidates([IDLE], EN_ZH)

    assert selection.survivors == (IDLE,)
    assert selection.removed == dict.fromkeys(REMOVAL_REASONS, 0)


def test_every_filter_counts_what_it_removed_and_only_survivors_remain():
    candidates = [
        IDLE,
        replace(IDLE, node_id="registering", status="registering"),
        replace(IDLE, node_id="degraded", status="degraded"),
        replace(IDLE, node_id="drained", status="draining"),
        replace(IDLE, node_id="timed-out", stalled=True),
        replace(IDLE, node_id="no-tts", ready_services=frozenset({"asr", "nmt", "semantic"})),
        replace(IDLE, node_id="ja-ko", pool="overflow", languages=("ja", "ko")),
        replace(IDLE, node_id="busy", running=3, reserved=1),
    ]

    selection = filter_candidates(candidates, EN_ZH)

    assert [c.node_id for c in selection.survivors] == ["node-1"]
    assert selection.removed == {
        "not_ready": 2,
        "draining": 1,
        "stalled": 1,
        "missing_service": 1,
        "languages_not_covered": 1,
        "capacity_full": 1,
    }


def test_a_node_failing_several_filters_is_counted_once_under_the_first():
    worst = replace(IDLE, status="degraded", ready_services=frozenset(), languages=("ja",), running=9)

    assert removal_reason(worst, EN_ZH) == "not_ready"
    assert sum(filter_candidates([worst], EN_ZH).removed.values()) == 1


def test_reservations_count_against_capacity_like_running_jobs():
    assert removal_reason(replace(IDLE, reserved=4), EN_ZH) == "capacity_full"
    assert removal_reason(replace(IDLE, running=2, reserved=1), EN_ZH) is None
    assert removal_reason(replace(IDLE, max_concurrent_jobs=0), EN_ZH) == "capacity_full"


def test_the_required_services_follow_the_pipeline():
    assert Pipeline().required_services == {"asr", "nmt", "tts"}
    assert Pipeline(use_tts=False, use_semantic=True, use_tone=True).required_services == {
        "asr", "nmt", "semantic", "tone",
    }  # fmt: skip
    text_only = JobRequirements("en", "zh", pipeline=Pipeline(use_asr=False, use_tts=False))
    assert removal_reason(replace(IDLE, ready_services=frozenset({"nmt"})), text_only) is None
    assert (
        removal_reason(IDLE, JobRequirements("en", "zh", pipeline=Pipeline(use_tone=True)))
        == "missing_service"
    )


def test_an_auto_source_needs_the_target_and_the_given_candidate_languages():
    assert removal_reason(IDLE, JobRequirements("auto", "zh")) is None
    assert removal_reason(IDLE, JobRequirements("auto", "zh", lang_a="en")) is None
    assert removal_reason(IDLE, JobRequirements("auto", "zh", lang_a="de")) == "languages_not_covered"


def test_a_candidate_is_built_from_the_live_view_and_the_capability_hash():
    view = {
        "node_id": "node-7",
        "status": "ready",
        "pool": "en-zh",
        "languages": ["en", "zh"],
        "running": 1,
        "reserved": 2,
        "max_concurrent_jobs": 4,
    }
    capabilities = {
        "asr": json.dumps({"ready": True, "services": []}),
        "nmt": json.dumps({"ready": True}),
        "tts": json.dumps({"ready": False, "reason": "loading"}),
        "semantic": "not json",
    }

    candidate = Candidate.from_live(view, capabilities)

    assert candidate.ready_services == {"asr", "nmt"}
    assert (candidate.running, candidate.reserved, candidate.max_concurrent_jobs) == (1, 2, 4)
    assert candidate.languages == ("en", "zh")
    assert removal_reason(candidate, EN_ZH) == "missing_service"

"""Which nodes may take a job now: the selection filters as one pure function (the job path and the dry run
share it), and the dry run that operators call through `GET /api/v1/pools/simulate`.

A job's candidates are the members of its eligible pools (or the one node it pins). Each candidate is
removed by the first filter it fails, so the counts per filter add up to the candidates removed:

1. `not_ready`: its status is not `ready` (registering, degraded, offline);
2. `draining`: an operator drained it;
3. `stalled`: an attempt on it timed out and it has not heartbeated since (`node_stalled.lua`);
4. `missing_service`: a service the job's pipeline needs is not ready on it;
5. `languages_not_covered`: its own languages lack the job's (only overflow members can fail this: a
   language-set pool is eligible only when its set covers the job);
6. `capacity_full`: `running + reserved >= max_concurrent_jobs`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from core.redis import get_redis, keys
from nodes.models import NodeStatus
from nodes.services import NodeNotFound, read_nodes
from pools.eligibility import Pool, covers, eligible_pools
from pools.services import current_config

NOT_READY = "not_ready"
DRAINING = "draining"
STALLED = "stalled"
MISSING_SERVICE = "missing_service"
LANGUAGES_NOT_COVERED = "languages_not_covered"
CAPACITY_FULL = "capacity_full"
# In the order they are applied.
REMOVAL_REASONS = (NOT_READY, DRAINING, STALLED, MISSING_SERVICE, LANGUAGES_NOT_COVERED, CAPACITY_FULL)

# Failure reasons of PROTOCOL section 3 that a job would end with if it were submitted now.
POOL_EMPTY = "POOL_EMPTY"
NO_AVAILABLE_NODE = "NO_AVAILABLE_NODE"


@dataclass(frozen=True)
class Pipeline:
    """The `pipeline` of a job; defaults as the node protocol's `job_assign` has them."""

    use_asr: bool = True
    use_nmt: bool = True
    use_tts: bool = True
    use_semantic: bool = False
    use_tone: bool = False

    @property
    def required_services(self) -> frozenset[str]:
        wanted = {
            "asr": self.use_asr,
            "nmt": self.use_nmt,
            "tts": self.use_tts,
            "semantic": self.use_semantic,
            "tone": self.use_tone,
        }
        return frozenset(kind for kind, used in wanted.items() if used)


@dataclass(frozen=True)
class JobRequirements:
    src_lang: str
    tgt_lang: str
    lang_a: str | None = None
    lang_b: str | None = None
    pipeline: Pipeline = field(default_factory=Pipeline)


@dataclass(frozen=True)
class Candidate:
    """What selection needs to know of one node, from its live view and its capability hash."""

    node_id: str
    status: str
    pool: str
    languages: tuple[str, ...]
    ready_services: frozenset[str]
    running: int
    reserved: int
    max_concurrent_jobs: int
    stalled: bool = False

    @classmethod
    def from_live(cls, view: Mapping[str, Any], capabilities: Mapping[str, str]) -> Candidate:
        """`view` as `nodes.services.read_nodes` gives it; `capabilities` the raw capability hash (one JSON
        field per service type, with `ready`)."""
        return cls(
            node_id=view["node_id"],
            status=view["status"],
            pool=view["pool"],
            languages=tuple(view["languages"]),
            ready_services=frozenset(kind for kind, raw in capabilities.items() if _ready(raw)),
            running=int(view["running"]),
            reserved=int(view["reserved"]),
            max_concurrent_jobs=int(view["max_concurrent_jobs"]),
            stalled=bool(view.get("stalled")),
        )


def _ready(raw: str) -> bool:
    try:
        return bool(json.loads(raw).get("ready"))
    except (ValueError, AttributeError):
        # A malformed field counts as not ready: selection must never send a job on a guess.
        return False


@dataclass(frozen=True)
class Selection:
    survivors: tuple[Candidate, ...]
    removed: dict[str, int]


def removal_reason(candidate: Candidate, job: JobRequirements) -> str | None:
    """The first filter `candidate` fails for `job`, or None when it could take the job now."""
    if candidate.status == NodeStatus.DRAINING:
        return DRAINING
    if candidate.status != NodeStatus.READY:
        return NOT_READY
    if candidate.stalled:
        return STALLED
    if not job.pipeline.required_services <= candidate.ready_services:
        return MISSING_SERVICE
    if not covers(candidate.languages, job.src_lang, job.tgt_lang, job.lang_a, job.lang_b):
        return LANGUAGES_NOT_COVERED
    if candidate.running + candidate.reserved >= candidate.max_concurrent_jobs:
        return CAPACITY_FULL
    return None


def filter_candidates(candidates: Iterable[Candidate], job: JobRequirements) -> Selection:
    """The candidates that could take `job` now, and how many each filter removed (every reason listed)."""
    removed = dict.fromkeys(REMOVAL_REASONS, 0)
    survivors = []
    for candidate in candidates:
        reason = removal_reason(candidate, job)
        if reason is None:
            survivors.append(candidate)
        else:
            removed[reason] += 1
    return Selection(tuple(survivors), removed)


# --- the dry run ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolCandidates:
    pool: Pool
    candidates: int
    available: int


@dataclass(frozen=True)
class DryRun:
    config_version: int
    job: JobRequirements
    node_id: str | None
    eligible: tuple[PoolCandidates, ...]
    candidates: int
    removed: dict[str, int]
    available: int
    chosen: Candidate | None
    would_fail_with: str | None


async def read_candidates(node_ids: list[str]) -> list[Candidate]:
    """Candidates for the given nodes (unknown ones left out): their live views, then their capability
    hashes, two round trips whatever the count."""
    views = await read_nodes(node_ids)
    client = get_redis()
    async with client.pipeline(transaction=False) as pipe:
        for view in views:
            pipe.hgetall(keys().node_capabilities(view["node_id"]))
        capabilities = await pipe.execute()
    return [Candidate.from_live(view, caps) for view, caps in zip(views, capabilities, strict=True)]


async def simulate(
    job: JobRequirements, node_id: str | None = None, rng: random.Random | None = None
) -> DryRun:
    """A selection as a job submitted now would make it, without reserving anything.

    Steps: read the configuration and the pools eligible for the job's languages (the overflow pool always
    is); read their members, or only the pinned node; apply the filters; choose uniformly at random among
    the survivors. Raises NodeNotFound when the pinned node is unknown.
    """
    config = await current_config()
    eligible = eligible_pools(config.with_overflow(), job.src_lang, job.tgt_lang, job.lang_a, job.lang_b)
    if node_id is not None:
        candidates = await read_candidates([node_id])
        if not candidates:
            raise NodeNotFound(node_id)
    else:
        found_in = await _members(eligible)
        candidates = [
            # Counted in the pool whose set holds it, even if its own record lags behind (membership is
            # what a job samples from).
            replace(candidate, pool=found_in[candidate.node_id])
            for candidate in await read_candidates(sorted(found_in))
        ]
    selection = filter_candidates(candidates, job)
    chosen = (rng or random).choice(selection.survivors) if selection.survivors else None
    per_pool = tuple(
        PoolCandidates(
            pool,
            sum(candidate.pool == pool.name for candidate in candidates),
            sum(candidate.pool == pool.name for candidate in selection.survivors),
        )
        for pool in eligible
    )
    failure = None if chosen else (POOL_EMPTY if not candidates else NO_AVAILABLE_NODE)
    return DryRun(
        config_version=config.version,
        job=job,
        node_id=node_id,
        eligible=per_pool,
        candidates=len(candidates),
        removed=selection.removed,
        available=len(selection.survivors),
        chosen=chosen,
        would_fail_with=failure,
    )


async def _members(pools: list[Pool]) -> dict[str, str]:
    """Node id -> the eligible pool whose membership set holds it, in one round trip."""
    client = get_redis()
    async with client.pipeline(transaction=False) as pipe:
        for pool in pools:
            pipe.smembers(keys().pool_members(pool.name))
        replies = await pipe.execute()
    return {node_id: pool.name for pool, members in zip(pools, replies, strict=True) for node_id in members}

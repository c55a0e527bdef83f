"""REST endpoints of the pools app (at /api/v1/pools): the live configuration with pool sizes, and the dry
run of a job's selection. Both read only; PROTOCOL.md section 3."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from ninja.errors import HttpError
from pydantic import field_validator

from access.auth import require
from access.models import Scope
from nodes.services import NODE_ID_RE, NodeNotFound
from pools import overview, selection
from pools.eligibility import AUTO

router = Router(tags=["pools"])

LANGUAGE_RE = re.compile(r"^[a-z]{2,3}$")
LANGUAGE_PROBLEM = "a language code: 2 or 3 lowercase letters"


class PoolOut(Schema):
    pool_id: int = Field(description="0 for the overflow pool")
    name: str = Field(description="the language set joined by '-', or 'overflow'")
    languages: list[str]
    required_services: list[str]
    size: int = Field(description="member nodes")
    ready: int = Field(description="members that are ready and not drained")
    capacity: int = Field(description="job slots its members declare (max_concurrent_jobs summed)")
    reserved: int = Field(description="slots assigned to a job the node has not taken yet")
    running: int = Field(description="slots running a job")


class PoolsOut(Schema):
    version: int = Field(description="configuration version; 0 before the first pool exists")
    epoch: int = Field(description="fencing epoch of the write that made this version")
    leader: str | None = Field(description="the process holding the leader lease; null when none does")
    leader_epoch: int | None
    generated_at: datetime | None
    generated_by: str
    pools: list[PoolOut] = Field(description="the configured pools, then the overflow pool")


@router.get("", response=PoolsOut, auth=require(Scope.POOLS_READ), summary="Pool configuration (live)")
async def list_pools(request: HttpRequest) -> dict[str, Any]:
    status = await overview.read_overview()
    return {
        "version": status.version,
        "epoch": status.epoch,
        "leader": status.leader,
        "leader_epoch": status.leader_epoch,
        "generated_at": status.generated_at,
        "generated_by": status.generated_by,
        "pools": [row.to_dict() for row in status.pools],
    }


class SimulateQuery(Schema):
    src_lang: str = Field(description="language code, or 'auto'")
    tgt_lang: str
    lang_a: str | None = Field(None, description="with src_lang=auto: a candidate source language")
    lang_b: str | None = None
    use_asr: bool = True
    use_nmt: bool = True
    use_tts: bool = True
    use_semantic: bool = False
    use_tone: bool = False
    node_id: str | None = Field(None, description="pin: consider only this node")

    @field_validator("src_lang")
    @classmethod
    def _source(cls, value: str) -> str:
        if value != AUTO and not LANGUAGE_RE.match(value):
            raise ValueError(f"{LANGUAGE_PROBLEM}, or auto")
        return value

    @field_validator("tgt_lang", "lang_a", "lang_b")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is not None and not LANGUAGE_RE.match(value):
            raise ValueError(LANGUAGE_PROBLEM)
        return value

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, value: str | None) -> str | None:
        if value is not None and not NODE_ID_RE.match(value):
            raise ValueError("a node id: letters, digits and . _ : - (at most 64)")
        return value


class EligiblePoolOut(Schema):
    pool_id: int
    name: str
    languages: list[str]
    candidates: int = Field(description="nodes considered from this pool")
    available: int = Field(description="of those, nodes that pass every filter")


class RemovedOut(Schema):
    not_ready: int
    draining: int
    stalled: int
    missing_service: int
    languages_not_covered: int
    capacity_full: int


class ChosenOut(Schema):
    node_id: str
    pool: str


class SimulateOut(Schema):
    config_version: int
    src_lang: str
    tgt_lang: str
    lang_a: str | None
    lang_b: str | None
    node_id: str | None = Field(description="the pinned node, if any")
    required_services: list[str]
    eligible_pools: list[EligiblePoolOut]
    candidates: int
    removed: RemovedOut = Field(description="candidates removed, by the first filter each failed")
    available: int
    chosen: ChosenOut | None = Field(description="the node a job submitted now would be offered first")
    would_fail_with: str | None = Field(description="POOL_EMPTY or NO_AVAILABLE_NODE when nothing is chosen")


@router.get(
    "/simulate", response=SimulateOut, auth=require(Scope.POOLS_READ), summary="Dry run of a job's selection"
)
async def simulate(request: HttpRequest, query: Query[SimulateQuery]) -> dict[str, Any]:
    """Which pools and nodes a job with these languages and pipeline would be offered now, and why the
    others were removed. Nothing is reserved; a real job chooses at random again."""
    pipeline = selection.Pipeline(
        use_asr=query.use_asr,
        use_nmt=query.use_nmt,
        use_tts=query.use_tts,
        use_semantic=query.use_semantic,
        use_tone=query.use_tone,
    )
    job = selection.JobRequirements(query.src_lang, query.tgt_lang, query.lang_a, query.lang_b, pipeline)
    try:
        run = await selection.simulate(job, query.node_id)
    except NodeNotFound:
        raise HttpError(404, f"no node {query.node_id!r}") from None
    return {
        "config_version": run.config_version,
        "src_lang": job.src_lang,
        "tgt_lang": job.tgt_lang,
        "lang_a": job.lang_a,
        "lang_b": job.lang_b,
        "node_id": run.node_id,
        "required_services": sorted(pipeline.required_services),
        "eligible_pools": [
            {
                "pool_id": item.pool.pool_id,
                "name": item.pool.name,
                "languages": list(item.pool.languages),
                "candidates": item.candidates,
                "available": item.available,
            }
            for item in run.eligible
        ],
        "candidates": run.candidates,
        "removed": run.removed,
        "available": run.available,
        "chosen": {"node_id": run.chosen.node_id, "pool": run.chosen.pool} if run.chosen else None,
        "would_fail_with": run.would_fail_with,
    }

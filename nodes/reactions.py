"""What the apps above the node plane do when a node changes, attached once at start.

Apps depend one way: `pools` groups nodes and `jobs` runs on them, so both import `nodes` and `nodes` imports
neither. The node services still have to trigger their reactions (a registered node joins its pool, an
offline node's attempts go elsewhere, a node's job answer reaches the job path), so each of those apps hands
its functions over here from its `AppConfig.ready()`. Every entry point (consumer, HTTP link, sweeps, admin,
commands) runs inside a configured Django process, so the reactions are always attached before a node speaks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PoolReactions:
    """`pools.services`: pool membership follows a node's status, services and language set."""

    place_node: Callable[..., Awaitable[str]]
    wants_membership: Callable[[str, set[str], list[str]], bool]
    resync_node: Callable[[str, str], Awaitable[str]]


@dataclass(frozen=True)
class JobReactions:
    """`jobs.services`: a node's job messages (by frame type), its going offline, and its coming back on a new
    connection while it held attempts."""

    on_message: Mapping[str, Callable[[Any, str], Awaitable[None]]]
    node_went_offline: Callable[[str], Awaitable[Any]]
    node_reconnected: Callable[[str], Awaitable[Any]]


_pools: PoolReactions | None = None
_jobs: JobReactions | None = None


def attach_pools(reactions: PoolReactions) -> None:
    global _pools
    _pools = reactions


def attach_jobs(reactions: JobReactions) -> None:
    global _jobs
    _jobs = reactions


def pools() -> PoolReactions:
    if _pools is None:
        raise RuntimeError("the pools app is not installed: node membership has no one to maintain it")
    return _pools


def jobs() -> JobReactions:
    if _jobs is None:
        raise RuntimeError("the jobs app is not installed: node job messages have no one to handle them")
    return _jobs

"""Which pools may serve a job: a pure function of the configuration and the job's languages."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

AUTO = "auto"
# Nodes whose language set has no pool of its own (the configuration is at max_pools) join this one: it is
# eligible for every job, and selection checks each member's own languages, so no node is ever stranded.
OVERFLOW = "overflow"


@dataclass(frozen=True)
class Pool:
    pool_id: int
    name: str
    languages: tuple[str, ...]
    required_services: tuple[str, ...]

    @classmethod
    def from_dict(cls, data: dict) -> Pool:
        return cls(
            pool_id=int(data["pool_id"]),
            name=data["name"],
            languages=tuple(data["languages"]),
            required_services=tuple(data.get("required_services", ())),
        )

    def to_dict(self) -> dict:
        return {
            "pool_id": self.pool_id,
            "name": self.name,
            "languages": list(self.languages),
            "required_services": list(self.required_services),
        }


def needed_languages(src: str, tgt: str, lang_a: str | None = None, lang_b: str | None = None) -> set[str]:
    """Languages a node must cover for a job: both sides, or for `auto` the target plus the candidates."""
    if src == AUTO:
        return {lang for lang in (tgt, lang_a, lang_b) if lang}
    return {src, tgt}


def covers(languages: Iterable[str], src: str, tgt: str, lang_a: str | None = None, lang_b: str | None = None) -> bool:
    return needed_languages(src, tgt, lang_a, lang_b) <= set(languages)


def eligible_pools(
    pools: Sequence[Pool], src: str, tgt: str, lang_a: str | None = None, lang_b: str | None = None
) -> list[Pool]:
    """Pools whose language set contains everything the job needs (`src→tgt`; `auto→tgt` narrowed by
    `lang_a`/`lang_b` when given). The overflow pool is always a candidate: its members are filtered by
    their own languages at selection."""
    return [pool for pool in pools if pool.name == OVERFLOW or covers(pool.languages, src, tgt, lang_a, lang_b)]

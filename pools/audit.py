"""Applies pool-configuration audit entries (see core/audit.py) to PoolConfigVersion."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pools.models import PoolConfigVersion


def apply_entries(items: list[dict[str, Any]]) -> None:
    for item in items:
        # Idempotent: a redelivered entry (writer crashed after commit, before ack) changes nothing.
        PoolConfigVersion.objects.get_or_create(
            epoch=item["epoch"],
            version=item["version"],
            defaults={
                "generated_by": item["generated_by"][:150],
                "generated_at": datetime.fromtimestamp(int(item["generated_at"]) / 1000, UTC),
                "pools": item["pools"],
                "change": item["change"],
            },
        )

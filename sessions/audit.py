"""Applies session audit entries (see core/audit.py) to SessionRecord rows in bulk.

A session writes two entries, `opened` and `closed`; they may arrive in one batch, out of order or twice
(a batch claimed again after a writer crashed), so each sets only its own fields and a row is created by
whichever comes first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sessions.models import SessionRecord

OPENED_FIELDS = (
    "session_id", "api_key_id", "client_version", "platform", "mode", "src_lang", "tgt_lang", "lang_a", "lang_b",
    "trace_id", "origin", "instance",
)  # fmt: skip
CLOSED_FIELDS = ("close_reason", "utterances", "results", "missing")


def _at(ms: int | str) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


def apply_entries(items: list[dict[str, Any]]) -> None:
    """Upsert one row per session mentioned; runs inside the writer's transaction."""
    uids = {item["uid"] for item in items}
    rows = {row.uid: row for row in SessionRecord.objects.select_for_update().filter(uid__in=uids)}
    for item in items:
        row = rows.get(item["uid"])
        if row is None:
            row = rows[item["uid"]] = SessionRecord(uid=item["uid"], opened_at=_at(item["opened_at"]))
        if item["type"] == "opened":
            for name in OPENED_FIELDS:
                setattr(row, name, (item.get(name) or "")[: SessionRecord._meta.get_field(name).max_length])
            row.opened_at = _at(item["opened_at"])
        elif item["type"] == "closed":
            row.session_id = row.session_id or item.get("session_id", "")
            row.closed_at = _at(item["closed_at"])
            for name in CLOSED_FIELDS:
                setattr(row, name, item.get(name) or ("" if name == "close_reason" else 0))
    for row in rows.values():
        row.save()

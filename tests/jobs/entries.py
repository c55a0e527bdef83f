"""Job audit entries in the shapes the live path appends (category "jobs"), built in code for the tests."""

from __future__ import annotations

from typing import Any

# 2023-11-14 22:13:20 UTC, in ms like every time in an entry.
T0 = 1_700_000_000_000


def job_entry(job_id: str, seq: int, state: str = "NEW", **fields: Any) -> dict[str, Any]:
    return {
        "type": "job",
        "job_id": job_id,
        "seq": seq,
        "state": state,
        "reason": "",
        "src_lang": "en",
        "tgt_lang": "zh",
        "pool": "en-zh",
        "node_id": "",
        "attempt_id": 1,
        "session_id": "",
        "utterance_index": None,
        "trace_id": "",
        "pinned_node": "",
        "created_at": T0,
        "ended_at": None,
        "error": None,
        "timings": {},
        **fields,
    }


def attempt_entry(job_id: str, attempt_id: int, seq: int, state: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "attempt",
        "job_id": job_id,
        "attempt_id": attempt_id,
        "seq": seq,
        "node_id": "node-1",
        "state": state,
        "reason": "",
        "started_at": T0 + 10,
        "ended_at": None,
        **fields,
    }

"""JSON-lines logging for machines and a short format for people at a terminal.

Callers pass context as `extra={...}` with the fields below; anything else in a record is not emitted, so a
message object that carries audio or a token can never leak through a formatter.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from django.conf import settings

CONTEXT_FIELDS = ("event", "node_id", "job_id", "attempt_id", "trace_id", "reason", "token_id", "code", "conn")


def _context(record: logging.LogRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in CONTEXT_FIELDS if getattr(record, name, None) not in (None, "")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "instance": settings.INSTANCE_ID,
            **_context(record),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        context = " ".join(f"{k}={v}" for k, v in _context(record).items())
        text = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if context:
            text = f"{text}  [{context}]"
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return text

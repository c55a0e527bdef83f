"""JSON-lines logging for machines and a short format for people at a terminal.

Every JSON line has `timestamp`, `level`, `logger`, `event` (the `event` passed in `extra`, else the message
itself), `message` and `instance`. Callers pass context as `extra={...}` with the fields below; anything
else in a record is not emitted, so a message object that carries audio or a token can never leak through a
formatter.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

from django.conf import settings

# A credential in a query string (`?token=...`, as the real node connects) is masked in any message, whoever
# logged it: a safety net under the rule that code never logs secrets.
_QUERY_SECRET = re.compile(r"([?&](?:token|api_key|key|secret)=)[^&\s\"']+", re.IGNORECASE)


def redact(text: str) -> str:
    return _QUERY_SECRET.sub(r"\1[redacted]", text)


CONTEXT_FIELDS = ("event", "node_id", "job_id", "attempt_id", "trace_id", "reason", "token_id", "code", "conn", "client")


def _context(record: logging.LogRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in CONTEXT_FIELDS if getattr(record, name, None) not in (None, "")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        line: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": message,
            "message": message,
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
        text = f"{stamp} {record.levelname:<7} {record.name}: {redact(record.getMessage())}"
        if context:
            text = f"{text}  [{context}]"
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return text


class DropBeatTicks(logging.Filter):
    """Drops Celery beat's "Scheduler: Sending due task" line, one per tick of every periodic task: routine
    enough to bury everything else, while its start-up and error lines stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Scheduler: Sending due task")

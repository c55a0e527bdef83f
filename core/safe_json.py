"""JSON from peers (node frames, node-link bodies, REST bodies), parsed with bounds.

`json.loads` alone takes whatever a peer sends: nesting a thousand levels deep raises RecursionError (an
internal error, not a refusal), `NaN` and `Infinity` come through as floats that the database's JSON check
and every strict JSON reader refuse later, and integers of any length are kept exactly, to be served back as
numbers JavaScript cannot hold. Here each of those is a `JsonRejected` at the door, with a reason for the
metric label and a message for the peer.

Integers are bounded to what a JavaScript peer (the lingua node is one) can write exactly: +-(2**53 - 1).
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1
# Python's own decimal digits limit for int() is 4,300; nothing we take needs more than 16.
_MAX_INT_CHARS = 20


class JsonRejected(ValueError):
    """A body or frame refused before it reached a schema. `reason` is a small fixed set (metric label):
    `syntax`, `depth`, `non_finite`, `integer_range`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _constant(name: str) -> Any:
    raise JsonRejected("non_finite", f"{name} is not a JSON number: numbers must be finite")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRejected("non_finite", f"{text[:32]} is out of range: numbers must be finite")
    return value


def _int(text: str) -> int:
    if len(text) > _MAX_INT_CHARS or abs(value := int(text)) > MAX_SAFE_INTEGER:
        raise JsonRejected("integer_range", f"integers must lie within +-{MAX_SAFE_INTEGER}")
    return value


# One decoder for every call: json.loads with hooks would build a decoder and its scanner per document.
_decoder = json.JSONDecoder(parse_constant=_constant, parse_float=_float, parse_int=_int)


def loads(data: str | bytes, max_depth: int) -> Any:
    """The decoded value, or JsonRejected naming what is wrong."""
    try:
        if isinstance(data, bytes | bytearray):
            data = data.decode(json.detect_encoding(data), "surrogatepass")
        value = _decoder.decode(data)
    except JsonRejected:
        raise
    except RecursionError:
        raise JsonRejected("depth", f"JSON nested deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError):
        raise JsonRejected("syntax", "not valid JSON") from None
    # Fewer opening brackets than the limit (counted in C, strings included) cannot nest past it: the usual
    # node frame skips the walk.
    if data.count("[") + data.count("{") > max_depth and depth_exceeds(value, max_depth):
        raise JsonRejected("depth", f"JSON nested deeper than {max_depth} levels")
    return value


def depth_exceeds(value: Any, max_depth: int) -> bool:
    """Whether containers nest more than `max_depth` levels. Level by level with list comprehensions, no
    recursion (no input can exhaust the stack) and no per-container generator: on a register frame this walk
    cost twice the parse when written as a stack of (node, depth) pairs."""
    level = [value] if type(value) in _CONTAINERS else []
    for _ in range(max_depth):
        if not level:
            return False
        below: list[Any] = []
        for node in level:
            children = node.values() if type(node) is dict else node
            below += [child for child in children if type(child) in _CONTAINERS]
        level = below
    return bool(level)


_CONTAINERS = (dict, list)

"""The bounded JSON reader takes what a strict reader takes, up to its limits, and names what it refuses."""

from __future__ import annotations

import pytest

from core.safe_json import MAX_SAFE_INTEGER, JsonRejected, loads


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_nesting_at_the_limit_is_taken_and_one_level_more_is_refused() -> None:
    assert loads(nested(32), 32) == loads(nested(32), 100)
    for text in (nested(33), '{"a": ' * 33 + "1" + "}" * 33, nested(100_000)):
        with pytest.raises(JsonRejected) as refused:
            loads(text, 32)
        assert refused.value.reason == "depth"


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    assert loads('{"text": "' + "[" * 100 + '"}', 32) == {"text": "[" * 100}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[NaN]", "non_finite"),
        ('{"a": -Infinity}', "non_finite"),
        ("[1e400]", "non_finite"),
        (f"[{MAX_SAFE_INTEGER + 1}]", "integer_range"),
        (f"[-{MAX_SAFE_INTEGER + 1}]", "integer_range"),
        ("[" + "9" * 5000 + "]", "integer_range"),
        ("{oops", "syntax"),
        (b"\xff\xfe\x00", "syntax"),
    ],
)
def test_what_a_strict_reader_rejects_is_refused_with_its_reason(text: str | bytes, reason: str) -> None:
    with pytest.raises(JsonRejected) as refused:
        loads(text, 32)
    assert refused.value.reason == reason


def test_the_largest_safe_integers_and_finite_floats_are_taken() -> None:
    assert loads(f"[{MAX_SAFE_INTEGER}, -{MAX_SAFE_INTEGER}, 1.5e308, -0.0]", 32) == [
        MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 1.5e308, -0.0,
    ]  # fmt: skip
    assert loads(b'{"a": "\\u00e9"}', 32) == {"a": "\u00e9"}

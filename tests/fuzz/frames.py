"""Hypothesis strategies for bad node frames, by family.

Each family is a function `() -> strategy of builders` registered in `FAMILIES`; a builder takes the
context and gives a frame: a `str` (sent as a text frame as is), `bytes` (a binary frame) or a dict (sent as
JSON). The context names the job the fuzzed node holds, a job another node holds, and the node's own id, so
families can aim at the fenced transitions. What is drawn never depends on the context (it is only known
once the live server has set it up), so hypothesis replays a failing case with the same draws and reports
the failure itself. To fuzz a new kind of input, add a function and register it: the node-frame test draws
from every family.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.factories import heartbeat_message, register_message

Frame = str | bytes | dict[str, Any]
Builder = Callable[["Context"], Frame]


def constant(frame: Frame) -> Builder:
    return lambda ctx: frame


@dataclass(frozen=True)
class Context:
    node_id: str
    held_job: str  # held by the fuzzed node, attempt `held_attempt`
    held_attempt: int
    foreign_job: str  # held by another node
    max_bytes: int  # the server's frame size limit


JOB_MESSAGE_TYPES = ("job_ack", "job_started", "asr_partial", "job_result")
MESSAGE_TYPES = (*JOB_MESSAGE_TYPES, "node_heartbeat", "node_error", "node_register")

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False),
    st.text(max_size=40),
)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)),
    max_leaves=12,
)


def job_message(kind: str, ctx: Context, job_id: str, attempt: Any) -> dict[str, Any]:
    """A well-formed job frame of `kind` as the real node sends it."""
    message: dict[str, Any] = {"type": kind, "job_id": job_id, "attempt_id": attempt, "node_id": ctx.node_id}
    if kind == "asr_partial":
        message.update(text="partial words", is_final=False)
    if kind == "job_result":
        message.update(success=True, text_asr="words", text_translated="mots", tts_audio="", tts_format="opus")
    return message


def valid_message(kind: str, ctx: Context) -> dict[str, Any]:
    if kind in JOB_MESSAGE_TYPES:
        return job_message(kind, ctx, ctx.held_job, ctx.held_attempt)
    if kind == "node_heartbeat":
        return heartbeat_message(ctx.node_id)
    if kind == "node_error":
        return {"type": "node_error", "node_id": ctx.node_id, "code": "GPU_OOM", "message": "out of memory"}
    return register_message(node_id=ctx.node_id)


def malformed() -> st.SearchStrategy[Builder]:
    """Not a node message at all: text that is not JSON, JSON that is not an object, binary frames, a valid
    message cut short."""
    truncated = st.tuples(st.sampled_from(MESSAGE_TYPES), st.integers(min_value=1, max_value=200)).map(
        lambda pair: lambda ctx: json.dumps(valid_message(pair[0], ctx))[: pair[1]]
    )
    not_objects = json_values.filter(lambda value: not isinstance(value, dict)).map(json.dumps)
    return st.one_of(st.one_of(st.text(max_size=200), st.binary(max_size=200), not_objects).map(constant), truncated)


def wrong_typed() -> st.SearchStrategy[Builder]:
    """A real message with one field replaced by any JSON value, or removed, or an unknown `type`."""

    def mutate(args: tuple[str, int, Any, bool]) -> Builder:
        kind, index, value, remove = args

        def build(ctx: Context) -> Frame:
            message = valid_message(kind, ctx)
            field = sorted(message)[index % len(message)]
            if remove:
                message.pop(field)
            else:
                message[field] = value
            return message

        return build

    return st.tuples(st.sampled_from(MESSAGE_TYPES), st.integers(0, 50), json_values, st.booleans()).map(mutate)


def oversized() -> st.SearchStrategy[Builder]:
    """A job result whose audio puts the frame just under or over the size limit."""
    return st.integers(min_value=-512, max_value=4096).map(
        lambda delta: lambda ctx: json.dumps(
            {**job_message("job_result", ctx, ctx.held_job, ctx.held_attempt), "tts_audio": "A" * max(0, ctx.max_bytes + delta - 300)}
        )
    )


def out_of_order() -> st.SearchStrategy[Builder]:
    """The held job's own frames, in any order and any number: a result before `job_started`, an ack after
    the result."""
    return st.sampled_from(JOB_MESSAGE_TYPES).map(lambda kind: lambda ctx: job_message(kind, ctx, ctx.held_job, ctx.held_attempt))


def stale_attempt() -> st.SearchStrategy[Builder]:
    """The held job with another attempt id: older, newer, nonsense."""
    attempts = st.one_of(
        st.sampled_from([lambda held: 0, lambda held: -1, lambda held: held - 1, lambda held: held + 1, lambda held: 2**31, lambda held: 2**63]),
        st.text(max_size=5).map(lambda text: lambda held: text),
    )
    return st.tuples(st.sampled_from(JOB_MESSAGE_TYPES), attempts).map(
        lambda pair: lambda ctx: job_message(pair[0], ctx, ctx.held_job, pair[1](ctx.held_attempt))
    )


def duplicate() -> st.SearchStrategy[Builder]:
    """The same result sent again (the fuzz test sends each drawn list in order, so a draw of two of these is
    a duplicate)."""
    return st.just(lambda ctx: job_message("job_result", ctx, ctx.held_job, ctx.held_attempt))


def foreign_job() -> st.SearchStrategy[Builder]:
    """Frames for a job another node holds, or for one that never existed."""
    jobs = st.one_of(st.just(None), st.text(min_size=1, max_size=30).map(lambda text: f"job-{text}"))
    return st.tuples(st.sampled_from(JOB_MESSAGE_TYPES), jobs, st.integers(1, 3)).map(
        lambda triple: lambda ctx: job_message(triple[0], ctx, triple[1] or ctx.foreign_job, triple[2])
    )


def hostile_json() -> st.SearchStrategy[Builder]:
    """Valid JSON syntax a strict parser must still refuse: nesting far past the depth limit (alone, or as the
    value of a real message's field), NaN and Infinity, integers past 2^53 - 1."""
    deep = st.integers(min_value=33, max_value=3000).map(lambda depth: constant("[" * depth + "]" * depth))

    def in_a_field(args: tuple[str, int, str]) -> Builder:
        """A real message with one field's value replaced by raw JSON text (json.dumps would refuse it)."""
        kind, index, literal = args

        def build(ctx: Context) -> Frame:
            message = valid_message(kind, ctx)
            message[sorted(message)[index % len(message)]] = "\x00"
            return json.dumps(message).replace('"\\u0000"', literal)

        return build

    literals = st.one_of(
        st.sampled_from(["NaN", "Infinity", "-Infinity", "[NaN]", '{"x": Infinity}']),
        st.integers(min_value=2**53, max_value=2**80).flatmap(lambda n: st.sampled_from([str(n), str(-n)])),
        st.integers(min_value=33, max_value=1500).map(lambda depth: '{"a": ' * depth + "1" + "}" * depth),
    )
    return st.one_of(deep, st.tuples(st.sampled_from(MESSAGE_TYPES), st.integers(0, 50), literals).map(in_a_field))


FAMILIES: dict[str, Callable[[], st.SearchStrategy[Builder]]] = {
    "malformed": malformed,
    "wrong_typed": wrong_typed,
    "oversized": oversized,
    "out_of_order": out_of_order,
    "stale_attempt": stale_attempt,
    "duplicate": duplicate,
    "foreign_job": foreign_job,
    "hostile_json": hostile_json,
}


def any_frame() -> st.SearchStrategy[tuple[str, Builder]]:
    """(family name, frame builder) from every registered family."""
    return st.one_of(*(factory().map(lambda build, name=name: (name, build)) for name, factory in FAMILIES.items()))

"""Placing an attempt: sample candidates at random, reserve a slot on one, mark the job DISPATCHED, send the
`job_assign`; without capacity the job waits in the pending queue, first come first served. A failed attempt
is placed again here (on another node) while attempts remain.

Round trips of a first attempt: the candidates' sample rides with the job's creation (jobs/services.py), and so
does a reservation on a member this process sampled within the last second (`Sample.guess`); only when that
one is refused, one `node_reserve` per candidate tried (it also returns what delivery needs); then one
`job_dispatch` (fenced by the attempt's selection claim, deadline and audit entry inside). Selection reads the pool configuration this
process cached and checks its version at most every CONFIG_CHECK_S, and always before concluding that no node
can take the job: `node_reserve.lua` checks the node's own languages, services and capacity, so an older
configuration can at worst make a job look in a pool that has since changed, never place it wrongly.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from core import metrics, scripts, stats
from core.redis import get_redis, keys
from jobs import transitions
from jobs.models import FailureReason, JobState
from jobs.transitions import member
from nodes import connections
from pools import services as pools
from pools.eligibility import Pool, eligible_pools, needed_languages

log = logging.getLogger(__name__)

PIPELINE_SERVICES = {"use_asr": "asr", "use_nmt": "nmt", "use_tts": "tts", "use_semantic": "semantic", "use_tone": "tone"}
# Job fields of PROTOCOL's job_assign that a submitter may give and we pass through unchanged.
PASS_THROUGH = (
    "dialect", "features", "mode", "lang_a", "lang_b", "auto_langs", "enable_streaming_asr",
    "partial_update_interval_ms", "padding_ms", "turn_id", "context_text", "group_id", "part_index",
    "is_manual_cut", "is_timeout_triggered", "is_max_duration_triggered",
)  # fmt: skip
CONFIG_CHECK_S = 1.0


@dataclass
class _QueueSeen:
    """Whether this process last saw jobs waiting for capacity: from each submission's look at the queue,
    each pump pass (every JOB_SWEEP_INTERVAL_S) and each job it queued. A job's end offers its slot to the
    queue at once only when jobs may wait; otherwise the next pump pass of some instance does, so a job
    that started waiting elsewhere within the last pass may wait up to one more pass."""

    waiting: bool = False


queue_seen = _QueueSeen()


@dataclass
class _ConfigCheck:
    at: float = float("-inf")


_config_checked = _ConfigCheck()


def reserve_args(job: dict[str, str], request: dict[str, Any]) -> tuple[str, str, int]:
    """What `node_reserve.lua` checks a node against for this job: the services it must run (JSON), the
    languages it must have (JSON), and the slot's lifetime in ms."""
    needed = json.dumps(sorted(needed_languages(job["src_lang"], job["tgt_lang"], request.get("lang_a"), request.get("lang_b"))))
    required = json.dumps(
        [svc for flag, svc in PIPELINE_SERVICES.items() if request.get("pipeline", {}).get(flag, svc in ("asr", "nmt", "tts"))]
    )
    # Past any deadline the attempt can have: a slot outlives its holder only by this much.
    ttl = int(settings.JOB_ACK_TIMEOUT_S * 1000) + int(job.get("timeout_ms") or settings.JOB_TIMEOUT_S * 1000) + 5000
    return required, needed, ttl


def _queue_reserve(pipe: Any, job_id: str, attempt: int, node_id: str, args: tuple[str, str, int]) -> None:
    k = keys()
    required, needed, ttl = args
    scripts.queue(
        pipe, "node_reserve",
        [*k.node_keys(node_id), k.node_reservations(node_id), k.node_running(node_id), k.node_unavailable(node_id)],
        [member(job_id, attempt), ttl, required, needed],
    )  # fmt: skip


# The last members this process sampled from each pool, and when: a first attempt reserves on one of them in
# the round trip that creates the job (node_reserve.lua is the authority on whether the node can take it, so a
# stale guess only costs the usual path); the sample read in that round trip refreshes them.
GUESS_MAX_AGE_S = 1.0
_recent_members: dict[str, tuple[float, list[str]]] = {}


def forget_samples() -> None:
    """Forget the recent samples (tests point the process at a fresh Redis)."""
    _recent_members.clear()


@dataclass
class Sample:
    """Random members of a job's eligible pools, read in a round trip the caller makes anyway; for a first
    attempt, a reservation on a recently sampled member rides in that round trip too (`guess`)."""

    job: dict[str, str]
    request: dict[str, Any]
    config: pools.PoolConfig = field(default_factory=pools.cached_config)
    checks_version: bool = False
    eligible: list[Pool] = field(default_factory=list)
    guess: tuple[str, str] | None = None  # (node, pool) reserved on in the same round trip

    def queue(self, pipe: Any, job_id: str | None = None) -> None:
        """Queue the reads on `pipe`: the configuration's version when it is due for a check, then one
        SRANDMEMBER per eligible pool (cost independent of pool size)."""
        self.checks_version = not self.config.version or time.monotonic() - _config_checked.at > CONFIG_CHECK_S
        if self.job.get("pinned"):
            return
        request = self.request
        self.eligible = eligible_pools(
            self.config.with_overflow(), self.job["src_lang"], self.job["tgt_lang"], request.get("lang_a"), request.get("lang_b")
        )
        if self.checks_version:
            pipe.hget(keys().pool_config, "version")
        for pool in self.eligible:
            pipe.srandmember(keys().pool_members(pool.name), settings.JOB_SAMPLE_SIZE + len(self.tried))
        if job_id is not None and not self.tried:
            self.guess = _guess(self.eligible)
            if self.guess is not None:
                _queue_reserve(pipe, job_id, 1, self.guess[0], reserve_args(self.job, request))

    @property
    def tried(self) -> set[str]:
        return set(filter(None, self.job.get("tried", "").split(",")))

    def barred_and_returning(self) -> tuple[set[str], set[str]]:
        """Nodes tried before, split into those a retry must avoid (they answered the job, or timed out on it)
        and those that may take it again (every attempt they had ended with a WENT_AWAY reason). The job's
        attempts are fields of its hash, read with it."""
        tried = self.tried
        if not tried:
            return set(), set()
        attempts = transitions.attempts_of(self.job)
        went_away = {a.get("node_id") for a in attempts if a.get("reason") in transitions.WENT_AWAY}
        barred = {a.get("node_id") for a in attempts if a.get("reason") not in transitions.WENT_AWAY}
        returning = (tried & went_away) - barred
        return tried - returning, returning

    def parse(self, replies: list[Any]) -> Sampled:
        """The candidates from the replies of `queue`: untried nodes first, in random order, then nodes whose
        earlier attempt ended because they went away (the retry rule); and the guessed reservation, when one
        was made."""
        reserved = None
        if self.guess is not None:
            *replies, outcome = replies
            metrics.RESERVATIONS.labels(result="ok" if outcome[0] == "OK" else "refused", reason=outcome[0].lower()).inc()
            metrics.RESERVATION_GUESSES.labels(result="ok" if outcome[0] == "OK" else "refused").inc()
            if outcome[0] == "OK":
                reserved = (self.guess[0], self.guess[1], [str(value) for value in outcome[4:9]])
        barred, returning = self.barred_and_returning()
        if self.job.get("pinned"):
            node_id = self.job["pinned"]
            return Sampled([] if node_id in barred else [(node_id, "")], 1, True, self.config.version)
        verified = None
        if self.checks_version:
            version, *replies = replies
            verified = int(version or 0) == self.config.version
            if verified:
                _config_checked.at = time.monotonic()
        for pool in self.eligible:
            metrics.POOL_DEMAND.labels(pool=pool.name).inc()
        found: dict[str, str] = {}
        again: dict[str, str] = {}
        populated = 0
        now = time.monotonic()
        for pool, members in zip(self.eligible, replies, strict=True):
            # An empty sample too: a pool that emptied must not be guessed from an older one.
            _recent_members[pool.name] = (now, members)
            populated += bool(members)
            for node_id in members:
                if node_id not in barred and node_id not in returning:
                    found.setdefault(node_id, pool.name)
                elif node_id in returning:
                    again.setdefault(node_id, pool.name)
        if self.guess is not None:
            # Tried already in this round trip (reserved, or refused just now).
            found.pop(self.guess[0], None)
        candidates, fallback = list(found.items()), list(again.items())
        random.shuffle(candidates)
        random.shuffle(fallback)
        return Sampled(candidates + fallback, populated, verified, self.config.version, reserved)


@dataclass(frozen=True)
class Sampled:
    candidates: list[tuple[str, str]]  # (node, pool) in random order, without the nodes tried before
    populated: int  # eligible pools that had any member (0 means POOL_EMPTY)
    verified: bool | None  # the configuration's version read with the sample: current, changed, or not read
    version: int  # of the configuration the sample came from
    # A slot reserved in the sampling round trip: (node, pool, what delivery needs), as _reserve_one returns.
    reserved: tuple[str, str, list[str]] | None = None


def _guess(eligible: list[Pool]) -> tuple[str, str] | None:
    """A random member of one of the eligible pools, from this process's recent samples of them."""
    now = time.monotonic()
    recent = [
        (pool.name, members) for pool in eligible
        if (seen := _recent_members.get(pool.name)) and now - seen[0] <= GUESS_MAX_AGE_S and (members := seen[1])
    ]  # fmt: skip
    if not recent:
        return None
    pool, members = random.choice(recent)
    return random.choice(members), pool


async def _read_sample(job: dict[str, str], request: dict[str, Any]) -> Sampled:
    sample = Sample(job, request)
    if sample.job.get("pinned"):
        return sample.parse([])
    async with get_redis().pipeline(transaction=False) as pipe:
        sample.queue(pipe)
        replies = await pipe.execute()
    return sample.parse(replies)


async def select_and_dispatch(job_id: str, attempt: int, submitted_at: int | None = None) -> str:
    """Place one attempt of a job read from Redis (a retry, or a job from the pending queue) under its
    selection claim. Returns what happened."""
    job = await get_redis().hgetall(keys().job(job_id))
    if not job or job.get("state") != JobState.SELECTING or job.get("attempt_id") != str(attempt):
        return "stale"
    claim = secrets.token_hex(8)
    if not await transitions.claim(job_id, attempt, claim, "claim"):
        metrics.JOB_CLAIMS.labels(result="busy").inc()
        return "busy"
    return await place_claimed(job_id, attempt, job, claim, submitted_at)


async def place_claimed(
    job_id: str, attempt: int, job: dict[str, str], claim: str, submitted_at: int | None = None,
    audio: str | None = None, sample: Sampled | None = None,
) -> str:
    """`place` under a claim this caller holds, giving it back unless the attempt left SELECTING (then the
    release would be a no-op: a claim only counts while its attempt is SELECTING)."""
    metrics.JOB_CLAIMS.labels(result="claimed").inc()
    outcome = None
    try:
        outcome = await _place(job_id, attempt, job, claim, submitted_at, audio, sample)
        return outcome
    finally:
        if outcome in (None, "pending"):
            # Lets the next pump try again now rather than when the claim expires.
            await transitions.claim(job_id, attempt, claim, "release")


async def _place(
    job_id: str, attempt: int, job: dict[str, str], claim: str, submitted_at: int | None, audio: str | None,
    sample: Sampled | None,
) -> str:
    request = json.loads(job["request"])
    required, needed, ttl = reserve_args(job, request)
    sampled = sample or await _read_sample(job, request)
    chosen = sampled.reserved
    if chosen is None and sampled.verified is not False:
        chosen = await _reserve_one(job_id, attempt, sampled.candidates, required, needed, ttl)
    if chosen is None and sampled.verified is not True and (await pools.current_config()).version != sampled.version:
        # The configuration changed since this process cached it: look again with the current one (read
        # just now), rather than conclude that nothing fits.
        sampled = await _read_sample(job, request)
        chosen = await _reserve_one(job_id, attempt, sampled.candidates, required, needed, ttl)
    if chosen is None:
        return await _wait_for_capacity(job_id, job, sampled.populated)
    node_id, pool, delivery = chosen
    k = keys()
    queued = audio is None

    def build(pipe: Any) -> None:
        scripts.queue(
            pipe, "job_dispatch", k.job_slot_keys(job_id),
            [
                str(attempt), claim, node_id, pool, delivery[0], int(settings.JOB_ACK_TIMEOUT_S * 1000),
                int(settings.JOB_TIMEOUT_S * 1000), delivery[4],
            ],
        )  # fmt: skip
        if queued:
            # A retry or a job from the queue: its audio, and its entry in the queue gone now that it is placed.
            pipe.get(k.job_audio(job_id))
            pipe.zrem(k.jobs_pending, job_id)

    replies = await scripts.run_pipeline("job_dispatch", build)
    step = replies[0]
    if step[0] != "OK":
        # Cancelled meanwhile, or placed by another selector: this one was paused past its claim and a sweeper
        # handed the job on. When that placement chose the same node, the reservation above found its slot
        # (same member), which is not this selector's to free.
        if not (step[1] in transitions.LIVE and step[2] == str(attempt) and step[3] == node_id):
            await transitions.free_slot(node_id, job_id, attempt)
        return "stale"
    if queued:
        audio = replies[1]
    dispatched_at = int(step[2])
    latency_ms = dispatched_at - submitted_at if submitted_at is not None else None
    stats.record_dispatch(pool or "pinned", latency_ms)
    if audio is None:
        # Kept longer than any job can live (transitions.audio_ttl_s); gone only if Redis lost it.
        await fail_attempt(job_id, attempt, FailureReason.DISPATCH_FAILED, "the job's audio is no longer stored", node_id)
        return "dispatch_failed"
    frame = job_assign_frame(job_id, attempt, job, request, audio)
    if not await deliver(delivery[1:4], frame):
        await fail_attempt(job_id, attempt, FailureReason.DISPATCH_FAILED, "the node could not be reached", node_id)
        return "dispatch_failed"
    if latency_ms is not None:
        metrics.DISPATCH_SECONDS.observe(latency_ms / 1000)
    context = {"job_id": job_id, "attempt_id": str(attempt), "node_id": node_id, "trace_id": job.get("trace_id")}
    log.debug("job dispatched", extra={"event": "job_dispatched", **context})
    return "dispatched"


async def _reserve_one(
    job_id: str, attempt: int, candidates: list[tuple[str, str]], required: str, needed: str, ttl: int
) -> tuple[str, str, list[str]] | None:
    """Reserve a slot on the first candidate that has one: (node, pool, [acks, channel, transport, url, now])."""
    k = keys()
    for node_id, pool in candidates:
        outcome = await scripts.run(
            "node_reserve",
            [*k.node_keys(node_id), k.node_reservations(node_id), k.node_running(node_id), k.node_unavailable(node_id)],
            [member(job_id, attempt), ttl, required, needed],
        )
        metrics.RESERVATIONS.labels(result="ok" if outcome[0] == "OK" else "refused", reason=outcome[0].lower()).inc()
        if outcome[0] == "OK":
            return node_id, pool, [str(value) for value in outcome[4:9]]
    return None


async def _wait_for_capacity(job_id: str, job: dict[str, str], populated: int) -> str:
    reason = FailureReason.POOL_EMPTY if populated == 0 else FailureReason.NO_AVAILABLE_NODE
    (metrics.POOL_EMPTY if reason == FailureReason.POOL_EMPTY else metrics.NO_AVAILABLE_NODE).inc()
    k = keys()
    async with get_redis().pipeline(transaction=False) as pipe:
        pipe.hset(k.job(job_id), "waiting_reason", reason)
        pipe.zadd(k.jobs_pending, {job_id: int(job["created_at"])}, nx=True)
        await pipe.execute()
    queue_seen.waiting = True
    return "pending"


def job_assign_frame(job_id: str, attempt: int, job: dict[str, str], request: dict[str, Any], audio: str) -> dict[str, Any]:
    pipeline = {"use_asr": True, "use_nmt": True, "use_tts": True, "use_semantic": False, "use_tone": False}
    pipeline.update(request.get("pipeline") or {})
    frame: dict[str, Any] = {
        "type": "job_assign",
        "job_id": job_id,
        "attempt_id": attempt,
        "session_id": request.get("session_id") or f"s-{job_id}",
        "utterance_index": request.get("utterance_index") or 0,
        "src_lang": job["src_lang"],
        "tgt_lang": job["tgt_lang"],
        "pipeline": pipeline,
        "audio": audio,
        "audio_format": request.get("audio_format", "opus"),
        "sample_rate": request.get("sample_rate", 16000),
        "trace_id": job["trace_id"],
    }
    for name in PASS_THROUGH:
        if request.get(name) is not None:
            frame[name] = request[name]
    return frame


async def deliver(route: list[str | None], frame: dict[str, Any]) -> bool:
    """Send a frame to a node by its route ([channel, transport, dispatch_url] from its meta)."""
    channel, transport, dispatch_url = route
    if transport == "http" and dispatch_url:
        return await connections.post_frame(dispatch_url, frame)
    if not channel:
        return False
    try:
        return await connections.send_frame(channel, frame)
    except Exception:
        log.exception("frame not delivered", extra={"event": "dispatch_failed", "job_id": frame["job_id"]})
        return False


async def send_cancel(job_id: str, node_id: str, reason: str, trace_id: str = "") -> None:
    route = await get_redis().hmget(keys().node_meta(node_id), ["channel", "transport", "dispatch_url"])
    frame = {"type": "job_cancel", "job_id": job_id, "reason": reason}
    if trace_id:
        frame["trace_id"] = trace_id
    await deliver(route, frame)


# --- ends of attempts and jobs ----------------------------------------------------------------------------------


async def fail_attempt(
    job_id: str, attempt: int | str, reason: str, message: str, node_id: str = "", *, node_error: dict[str, Any] | None = None
) -> str:
    """End an attempt as failed: free its slot, tell the node to stop, retry on another node or fail.
    The transition, the retry's pending deadline and the audit entries are one script; `node_error` is the
    node's own report (see `outcomes.bounded_node_error`), kept on the attempt."""
    result = await transitions.fail(job_id, attempt, reason, message, node_id, node_error)
    if result[0] == "STALE":
        return "stale"
    holder, trace_id = result[-2], result[-1]
    if holder:
        await transitions.free_slot(holder, job_id, attempt)
        if reason in (FailureReason.ACK_TIMEOUT, FailureReason.JOB_TIMEOUT):
            # Marked before the node hears of it: nothing it does after the cancel can race the mark.
            await _mark_stalled(holder, job_id, reason)
            await send_cancel(job_id, holder, reason.lower(), trace_id)
    context = {"job_id": job_id, "attempt_id": str(attempt), "reason": reason, "node_id": holder, "trace_id": trace_id}
    log.info("attempt failed", extra={"event": "attempt_failed", **context})
    if result[0] == "RETRY":
        metrics.RETRIES.labels(reason=reason).inc()
        await select_and_dispatch(job_id, int(result[1]))
        return "retry"
    # A job that failed while waiting for capacity leaves the queue now rather than at the pump's next pass.
    waiting = await _leave_queue(job_id)
    ended(job_id, JobState.FAILED, reason, attempt=str(attempt), node_id=holder, trace_id=trace_id, waiting=waiting)
    return "failed"


async def _mark_stalled(node_id: str, job_id: str, reason: str) -> None:
    """No new jobs for a node whose attempt timed out until it shows life (node_stalled.lua): a hung node
    would otherwise be sent job after job, each waiting out its own timeout."""
    if await scripts.run("node_stalled", [keys().node_meta(node_id)], []):
        log.warning("node stalled: no new jobs until it shows life", extra={
            "event": "node_stalled", "node_id": node_id, "job_id": job_id, "reason": reason})  # fmt: skip


async def _leave_queue(job_id: str) -> int:
    async with get_redis().pipeline(transaction=False) as pipe:
        pipe.zrem(keys().jobs_pending, job_id)
        pipe.zcard(keys().jobs_pending)
        _, waiting = await pipe.execute()
    return int(waiting)


def ended(job_id: str, state: str, reason: str = "", *, attempt: str, node_id: str, trace_id: str, waiting: int | None = None) -> None:
    """After a terminal transition (whose script already wrote the audit entries, the retention and the notice
    to long-polling clients): counters, the log line, and the queue's turn when jobs wait for capacity
    (`waiting`: the queue's length if the caller read it, else what this process last saw)."""
    metrics.JOBS_ENDED.labels(state=state, reason=reason or "none").inc()
    stats.record_end(job_id, state, reason, succeeded=state == JobState.DONE)
    context = {"event": "job_ended", "job_id": job_id, "attempt_id": attempt, "node_id": node_id or None, "trace_id": trace_id}
    # One line per finished job would flood the log at any real rate: successes are routine (DEBUG; the metrics
    # count them), failed and cancelled jobs stay visible.
    level = logging.DEBUG if state == JobState.DONE else logging.INFO
    log.log(level, "job ended %s", state, extra={**context, "reason": reason or None})
    if waiting if waiting is not None else queue_seen.waiting:
        # A slot may have freed: give waiting jobs their chance in arrival order.
        connections.spawn(pump_pending())


async def pump_pending(limit: int = 100) -> int:
    """Offer capacity to waiting jobs, oldest first. Once a job finds no slot, later jobs with the same
    needs are skipped this round: a slot that frees while the scan passes over must go to the older job."""
    client = get_redis()
    waiting = await client.zrange(keys().jobs_pending, 0, limit - 1)
    queue_seen.waiting = bool(waiting)
    blocked: set[tuple[str | None, ...]] = set()
    placed = 0
    for job_id in waiting:
        state, attempt, src, tgt, pinned = await client.hmget(
            keys().job(job_id), ["state", "attempt_id", "src_lang", "tgt_lang", "pinned"]
        )
        if state != JobState.SELECTING:
            await client.zrem(keys().jobs_pending, job_id)
            continue
        needs = (src, tgt, pinned)
        if needs in blocked:
            continue
        outcome = await select_and_dispatch(job_id, int(attempt))
        if outcome == "dispatched":
            placed += 1
        elif outcome == "pending":
            blocked.add(needs)
        # "busy" (another pass or instance is placing it right now), "stale", a failed dispatch: that job is
        # someone else's or settled, and blocks nobody behind it. Blocking on "busy" made concurrent passes
        # (every submitter that queues runs one) skip the whole queue behind the job another pass held, so a
        # queue that formed once under a burst stayed until the next sweep tick, job after job.
    return placed


"""One open session on this socket: its streaming buffer and pause timer, its audio budget, its utterances
in flight and their results. The consumer hands it parsed messages; it calls sessions/services.py.

Results go out as they come (docs/sessions.md): each utterance index gets exactly one final frame,
`translation_result` or `missing_result`, preceded by its `asr_partial`s, but a fast utterance does not wait
behind a slow earlier one. The client orders playback by index.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from core import metrics
from core.redis import UNAVAILABLE
from jobs.services import InvalidJob, JobConflict, JobNotFound
from nodes import connections
from sessions import audio, services
from sessions.cutting import Cut, CutReason, CutRules, Cutter
from sessions.limits import AudioBudget
from sessions.schemas import AudioChunk, Utterance
from sessions.services import SessionContext, SessionRefused, UtteranceJob

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[bool]]
# A client over its audio budget hears about it at most this often: the web client shows every error frame
# as a blocking alert.
RATE_LIMIT_NOTICE_S = 5.0


class LiveSession:
    def __init__(self, ctx: SessionContext, send: Send, clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.send = send
        self.cutter = Cutter(CutRules.from_settings(), clock)
        rate = settings.SESSIONS_MAX_AUDIO_BYTES_PER_S
        self.budget = AudioBudget(rate, max(rate, settings.SESSIONS_MAX_UTTERANCE_BYTES), clock)
        self.in_flight: set[asyncio.Task[None]] = set()
        self.closed = False
        self._pause_timer: asyncio.TimerHandle | None = None
        self._last_rate_notice = -RATE_LIMIT_NOTICE_S
        self._flush: asyncio.TimerHandle | None = None
        self._writing: asyncio.Future[None] | None = None
        self._ended = False
        self._closing: asyncio.Future[None] | None = None
        self._refresher = asyncio.ensure_future(self._refresh_loop())

    # --- messages ---------------------------------------------------------------------------------------------

    async def audio_chunk(self, message: AudioChunk) -> None:
        payload = b""
        if message.payload:
            try:
                payload = base64.b64decode(message.payload, validate=True)
            except (binascii.Error, ValueError):
                # As the old server: a payload that does not decode counts as an empty chunk (an is_final
                # still ends the utterance); the client hears nothing, the metric counts it.
                metrics.SESSION_REFUSALS.labels(code="BAD_AUDIO").inc()
                log.info("audio chunk payload is not base64", extra={"event": "bad_audio", "session_id": self.ctx.session_id})
        if payload and not self.budget.take(len(payload)):
            await self._rate_limited(len(payload))
            payload = b""
        cut = self.cutter.add(payload, message.is_final)
        self._arm_pause_timer()
        if cut is not None:
            self._start_cut(cut)

    async def utterance(self, message: Utterance) -> None:
        """A one-shot utterance: the client's own index, dispatched at once whatever came before."""
        try:
            raw = base64.b64decode(message.audio, validate=True)
        except (binascii.Error, ValueError):
            raise SessionRefused("INVALID_MESSAGE", "audio is not valid base64", {"field": "audio"}) from None
        if not raw:
            raise SessionRefused("INVALID_MESSAGE", "audio is empty", {"field": "audio"})
        if len(raw) > settings.SESSIONS_MAX_UTTERANCE_BYTES:
            raise SessionRefused(
                "AUDIO_TOO_LARGE",
                f"utterance audio is {len(raw)} bytes; the limit is {settings.SESSIONS_MAX_UTTERANCE_BYTES}",
                {"field": "audio", "limit": settings.SESSIONS_MAX_UTTERANCE_BYTES},
            )
        if not self.budget.take(len(raw)):
            await self._rate_limited(len(raw), always=True)
            return
        self.cutter.index_used(message.utterance_index)
        fields: dict[str, Any] = {"is_manual_cut": message.manual_cut, "dialect": message.dialect, "features": message.features}
        if message.pipeline is not None:
            fields["pipeline"] = message.pipeline.model_dump(exclude_none=True)
        job = UtteranceJob(
            index=message.utterance_index, audio=message.audio, src_lang=message.src_lang, tgt_lang=message.tgt_lang,
            audio_format=message.audio_format, sample_rate=message.sample_rate, fields=fields,
        )  # fmt: skip
        metrics.SESSION_UTTERANCES.labels(reason="one_shot").inc()
        self._start(job)

    async def heartbeat(self, timestamp: int) -> None:
        await self.send({"type": "server_heartbeat", "session_id": self.ctx.session_id, "timestamp": int(time.time() * 1000)})

    def tts_playback(self) -> None:
        # As the old server, TTS playback resets the pause baseline: listening is not a pause in speaking.
        if self.cutter.buffer:
            self.cutter.last_chunk_at = self.cutter.clock()
            self._arm_pause_timer()

    def begin_close(self, reason: str) -> None:
        """`session_close`, from now on: later messages of the session are refused, while `close` runs
        beside the socket's other messages (waiting for results must not hold them)."""
        self.closed = True
        self._closing = asyncio.ensure_future(self.close(reason))

    async def close(self, reason: str) -> None:
        """`session_close`: the buffer becomes the last utterance, results still due are sent (waiting up to
        SESSIONS_CLOSE_WAIT_S), then `session_close_ack`; the session's slot is freed."""
        self.closed = True
        self._cancel_pause_timer()
        if (cut := self.cutter.close()) is not None:
            self._start_cut(cut)
        pending = set(self.in_flight)
        if pending:
            _, late = await asyncio.wait(pending, timeout=settings.SESSIONS_CLOSE_WAIT_S)
            for task in late:
                task.cancel()
        # Ended (slot freed, audit entry written) before the ack, so a client that opens a new session on
        # receiving it finds the slot free.
        await self._end(reason or "session_close")
        await self.send({"type": "session_close_ack", "session_id": self.ctx.session_id})

    async def abandon(self, reason: str) -> None:
        """The socket is gone (or a new session_init replaced this session): drop the buffer, stop following
        jobs (they end normally; their results stay readable over REST), free the slot."""
        if self._ended:
            return
        self.closed = True
        self._cancel_pause_timer()
        self.cutter.discard()
        for task in list(self.in_flight):
            task.cancel()
        await self._end(reason)

    # --- utterances in flight ----------------------------------------------------------------------------------

    def _start_cut(self, cut: Cut) -> None:
        metrics.SESSION_UTTERANCES.labels(reason=cut.reason).inc()
        fields = {
            "padding_ms": cut.padding_ms,
            "is_manual_cut": cut.reason == CutReason.IS_FINAL,
            "is_timeout_triggered": cut.reason == CutReason.PAUSE,
            "is_max_duration_triggered": cut.reason == CutReason.MAX_DURATION,
        }
        job = UtteranceJob(
            index=cut.index, audio=base64.b64encode(cut.audio).decode(), src_lang=self.ctx.init.src_lang,
            tgt_lang=self.ctx.init.tgt_lang, audio_format=audio.FORMAT, sample_rate=audio.SAMPLE_RATE, fields=fields,
        )  # fmt: skip
        self._start(job)

    def _start(self, job: UtteranceJob) -> None:
        self.ctx.counts["utterances"] += 1
        self.ctx.counts["in_flight"] += 1
        self._counters_changed()
        task = asyncio.ensure_future(self._deliver(job))
        self.in_flight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self.ctx.counts["in_flight"] -= 1
        self._counters_changed()

    async def _deliver(self, job: UtteranceJob) -> None:
        """Submit the utterance's jobs, relay their partials, send the final frame of its index."""
        # Shielded: a socket that dies mid-submission must not leave a job half created; it completes and
        # then ends normally with nobody following it.
        submission = asyncio.ensure_future(services.submit_utterance(self.ctx, job))
        try:
            job_ids = await asyncio.shield(submission)
        except asyncio.CancelledError:
            connections.spawn(_quietly(submission))
            raise
        except JobConflict:
            metrics.SESSION_REFUSALS.labels(code="UTTERANCE_INDEX_REUSED").inc()
            await self._final(job, services.missing_frame(self.ctx, job.index, "UTTERANCE_INDEX_REUSED",
                                                          message="this utterance_index was already used with other audio"))
            return
        except InvalidJob as exc:
            await self._final(job, services.missing_frame(self.ctx, job.index, exc.code, message=exc.message))
            return
        except JobNotFound as lost:
            # Created and placed, then Redis lost its data before the submission read the job back.
            await self._lost(job, str(lost.args[0]) if lost.args else None)
            return
        except UNAVAILABLE:
            metrics.REDIS_ERRORS.labels(operation="session_submit").inc()
            log.warning("utterance not submitted: Redis unavailable", extra={"event": "redis_down", "session_id": self.ctx.session_id})
            await self._final(job, services.missing_frame(self.ctx, job.index, "DEPENDENCY_DOWN", message="the scheduler's state store is unavailable"))
            return
        except Exception:
            log.exception("utterance not submitted", extra={"event": "internal_error", "session_id": self.ctx.session_id})
            await self._final(job, services.missing_frame(self.ctx, job.index, "INTERNAL_ERROR"))
            return
        for job_id in job_ids:
            async def relay(partial: dict[str, Any], job_id: str = job_id) -> None:
                metrics.SESSION_RESULTS.labels(kind="asr_partial").inc()
                await self.send(services.partial_frame(self.ctx, job.index, job_id, partial))

            try:
                view = await services.follow_job(job_id, relay)
            except UNAVAILABLE:
                await self._final(job, services.missing_frame(self.ctx, job.index, "DEPENDENCY_DOWN", job_id))
                continue
            except JobNotFound:
                await self._lost(job, job_id)
                continue
            except Exception:
                # The job runs on; only this session's view of it is lost, and the client hears why.
                log.exception("job not followed", extra={"event": "internal_error", "session_id": self.ctx.session_id, "job_id": job_id})
                await self._final(job, services.missing_frame(self.ctx, job.index, "INTERNAL_ERROR", job_id))
                continue
            await self._final(job, services.result_frame(self.ctx, job.index, view))

    async def _lost(self, job: UtteranceJob, job_id: str | None) -> None:
        """Redis lost its data before the job's creation reached the database (architecture.md, "What a
        Redis loss costs"): nobody will end the job, and the client hears so instead of waiting."""
        log.warning("utterance job lost with Redis's data", extra={"event": "job_state_lost", "session_id": self.ctx.session_id, "job_id": job_id})
        await self._final(job, services.missing_frame(self.ctx, job.index, "STATE_LOST", job_id,
                                                      message="the scheduler lost this utterance's job with its state store's data"))  # fmt: skip

    async def _final(self, job: UtteranceJob, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        self.ctx.counts["results" if kind == "translation_result" else "missing"] += 1
        self._counters_changed()
        metrics.SESSION_RESULTS.labels(kind=kind).inc()
        metrics.SESSION_RESULT_SECONDS.observe(time.monotonic() - job.cut_at)
        if kind == "missing_result":
            log.info("utterance without result", extra={"event": "missing_result", "session_id": self.ctx.session_id,
                                                         "job_id": frame.get("job_id"), "reason": frame["reason"]})  # fmt: skip
        await self.send(frame)

    # --- timers -------------------------------------------------------------------------------------------------

    def _arm_pause_timer(self) -> None:
        self._cancel_pause_timer()
        deadline = self.cutter.pause_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - self.cutter.clock())
            self._pause_timer = asyncio.get_running_loop().call_later(delay, self._pause_elapsed)

    def _cancel_pause_timer(self) -> None:
        if self._pause_timer is not None:
            self._pause_timer.cancel()
            self._pause_timer = None

    def _pause_elapsed(self) -> None:
        self._pause_timer = None
        if self.closed:
            return
        cut = self.cutter.on_pause_timer()
        if cut is not None:
            self._start_cut(cut)
        else:
            self._arm_pause_timer()

    async def _rate_limited(self, size: int, *, always: bool = False) -> None:
        metrics.SESSION_REFUSALS.labels(code="RATE_LIMITED").inc()
        now = time.monotonic()
        if not always and now - self._last_rate_notice < RATE_LIMIT_NOTICE_S:
            return
        self._last_rate_notice = now
        limit = settings.SESSIONS_MAX_AUDIO_BYTES_PER_S
        log.info("session audio over its rate", extra={"event": "rate_limited", "session_id": self.ctx.session_id})
        await self.send({
            "type": "error", "code": "RATE_LIMITED",
            "message": f"audio above {limit} bytes per second was dropped",
            "details": {"limit_bytes_per_s": limit, "retry_after_ms": self.budget.retry_after_ms(size)},
        })  # fmt: skip

    def _counters_changed(self) -> None:
        """The admin's live view follows the counters within a second, in at most one write a second per
        session, however many utterances change them."""
        if self._flush is None and not self._ended:
            self._flush = asyncio.get_running_loop().call_later(1.0, self._publish_counters)

    def _publish_counters(self) -> None:
        self._flush = None
        if not self._ended:
            self._writing = asyncio.ensure_future(self._write_listing(refresh=False))

    async def _write_listing(self, *, refresh: bool) -> None:
        try:
            if refresh:
                await services.registry.refresh(self.ctx.bucket, self.ctx.session_id, self.ctx.live_fields())
            else:
                await services.registry.publish(self.ctx.session_id, self.ctx.live_fields())
        except UNAVAILABLE:
            metrics.REDIS_ERRORS.labels(operation="session_refresh").inc()
        except Exception:
            # The next round tries again; the listing expires only if every round fails for SESSIONS_TTL_S.
            log.exception("session listing not written", extra={"event": "internal_error", "session_id": self.ctx.session_id})

    async def _refresh_loop(self) -> None:
        """Keeps the session's slot and listing alive while the socket lives (they expire after SESSIONS_TTL_S)."""
        while True:
            await asyncio.sleep(settings.SESSIONS_TTL_S / 3)
            await self._write_listing(refresh=True)

    async def _end(self, reason: str) -> None:
        if self._ended:
            return
        self._ended = True
        self._refresher.cancel()
        if self._flush is not None:
            self._flush.cancel()
        if self._writing is not None:
            # A listing write still on its way would list the session again after its release.
            await asyncio.wait([self._writing])
        try:
            await services.close_session(self.ctx, reason)
        except UNAVAILABLE:
            # The slot and listing expire on their own (SESSIONS_TTL_S).
            metrics.REDIS_ERRORS.labels(operation="session_close").inc()


async def _quietly(task: asyncio.Future[Any]) -> None:
    with contextlib.suppress(Exception):
        await task

"""Simulated lingua web clients: N sessions streaming Opus Plan A audio (sessions/simulator.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core import runfile
from sessions.simulator import ClientConfig, run_clients, summarize, utterance_audio_ms


class Command(BaseCommand):
    help = "Open N sessions on /ws/session that stream audio like the lingua web client and report result latency."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url", default=None, help="session WebSocket (default: the instance `make run` runs here, else WEB_HOST/WEB_PORT)"
        )
        parser.add_argument("--key", default=None, help="API key with the sessions scope (default: SCHEDULER_API_KEY)")
        parser.add_argument("--count", type=int, default=10, help="concurrent sessions")
        parser.add_argument("--utterances", type=int, default=None, help="utterances per session, then stop")
        parser.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C or --utterances)")
        parser.add_argument("--chunks", type=int, default=4, help="256 ms chunks per utterance")
        parser.add_argument("--silence", type=float, default=1.0, help="seconds between utterances (real time)")
        parser.add_argument("--fast", action="store_true", help="as fast as possible: chunks back to back, one utterance in flight per session")
        parser.add_argument("--src-lang", default="zh")
        parser.add_argument("--tgt-lang", default="en")
        parser.add_argument("--ramp", type=float, default=0.0, help="spread the session starts over this many seconds")
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["count"] < 1:
            raise CommandError("--count must be at least 1")
        key = options["key"] or settings.SCHEDULER_API_KEY
        url = options["url"]
        if url is None:
            # The same instance every other command finds (the run file of `make run`), said on stderr.
            url = settings.WEB_URL.replace("http://", "ws://", 1) + "/ws/session"
            self.stderr.write(runfile.describe(settings, redis=False))
        if key:
            url = f"{url}{'&' if '?' in url else '?'}token={quote(key)}"
        config = ClientConfig(
            url=url, src_lang=options["src_lang"], tgt_lang=options["tgt_lang"], chunks_per_utterance=options["chunks"],
            realtime=not options["fast"], silence_s=options["silence"],
        )  # fmt: skip
        summary = asyncio.run(self._run(config, options))
        if not summary["connected"]:
            first = summary["first_errors"][0] if summary["first_errors"] else "no answer"
            raise CommandError(f"no session could connect to {url.split('?', 1)[0]}: {first}")
        if options["json"]:
            self.stdout.write(json.dumps(summary, indent=2))
            return
        self.stdout.write(
            f"{summary['sessions']} sessions ({summary['connected']} connected), {summary['utterances']} utterances of "
            f"{utterance_audio_ms(config)} ms in {summary['elapsed_s']} s: {summary['translated']} translated "
            f"({summary['utterances_per_s']}/s), missing {summary['missing'] or 0}, unanswered {summary['unanswered']}, "
            f"errors {summary['errors']}"
        )
        latency = summary["latency_ms"]
        self.stdout.write(f"is_final -> translation_result: p50 {latency['p50']} ms, p95 {latency['p95']} ms, p99 {latency['p99']} ms, max {latency['max']} ms")
        for error in summary["first_errors"]:
            self.stdout.write(f"  {error}")

    async def _run(self, config: ClientConfig, options: dict[str, Any]) -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Ctrl-C ends the run with a report; only the main thread may take signals (not when called from tests).
        with contextlib.suppress(RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, stop.set)
        if options["duration"]:
            loop.call_later(options["duration"], stop.set)
        started = time.time()
        outcomes = await run_clients(config, options["count"], stop, utterances=options["utterances"], ramp_s=options["ramp"])
        elapsed = time.time() - started
        summary = summarize(outcomes)
        summary["elapsed_s"] = round(elapsed, 1)
        summary["utterances_per_s"] = round(summary["translated"] / elapsed, 1) if elapsed else None
        return summary

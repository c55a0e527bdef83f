"""Submit jobs through the REST API and report what a client sees (`jobs.loadgen`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from argparse import ArgumentParser
from typing import Any

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core import runfile
from jobs.loadgen import MAX_WAIT_S, LoadConfig, LoadReport, run_load

API_KEY_ENV = "SCHEDULER_API_KEY"


class Command(BaseCommand):
    help = (
        "Drive load through the REST job API: submit --count jobs with --concurrency parallel clients, "
        "follow each to DONE/FAILED/CANCELLED, and print states, reasons, HTTP errors, throughput and "
        "submit-to-terminal latency percentiles."
    )
    # It only speaks HTTP to a scheduler (possibly another machine's): local settings, database and
    # migrations are irrelevant to it.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--url",
            help=f"scheduler base URL (default: the running `make run` instance, else WEB_HOST/WEB_PORT: {settings.WEB_URL})",
        )
        parser.add_argument(
            "--api-key",
            help=f"API key <id>.<secret> with scopes jobs:write and jobs:read (or set {API_KEY_ENV}, which "
            "keeps the secret out of the process list)",
        )
        parser.add_argument("--count", type=int, default=100, help="jobs to submit (default 100)")
        parser.add_argument("--concurrency", type=int, default=10, help="jobs in flight at once (default 10)")
        parser.add_argument("--src", default="zh", help="source language (default zh; 'auto' allowed)")
        parser.add_argument("--tgt", default="en", help="target language (default en)")
        parser.add_argument(
            "--audio-bytes", type=int, default=3200, help="random Opus-framed audio per job (default 3200)"
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=10.0,
            help=f"long-poll seconds on POST ?wait= and GET ?wait= (0 to {MAX_WAIT_S:g}; 0 polls; default 10)",
        )
        parser.add_argument(
            "--idempotency",
            action="store_true",
            help="send an Idempotency-Key per job and retry failed submissions with it",
        )
        parser.add_argument(
            "--job-timeout",
            type=float,
            default=120.0,
            help="seconds after which the client stops following a job (default 120)",
        )
        parser.add_argument("--session-id", help="put every job in this session, numbered by utterance_index")
        parser.add_argument("--seed", type=int, help="random seed for the audio bytes")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        api_key = options["api_key"] or settings.SCHEDULER_API_KEY
        if not api_key:
            raise CommandError(
                f"an API key is required: --api-key <id>.<secret> or {API_KEY_ENV}; create one with scopes "
                "jobs:write and jobs:read in the admin"
            )
        if options["url"] is None:
            options["url"] = settings.WEB_URL
            self.stderr.write(runfile.describe(settings, redis=False))
        try:
            config = LoadConfig(
                api_key=api_key,
                url=options["url"].rstrip("/"),
                count=options["count"],
                concurrency=options["concurrency"],
                src_lang=options["src"],
                tgt_lang=options["tgt"],
                audio_bytes=options["audio_bytes"],
                wait_s=options["wait"],
                idempotency=options["idempotency"],
                job_timeout_s=options["job_timeout"],
                session_id=options["session_id"],
                seed=options["seed"],
            )
        except ValueError as exc:
            # LoadConfig's messages never include the key itself, only what is wrong with it.
            raise CommandError(str(exc)) from None

        self._check_reachable(config.url)
        if not options["json"]:
            self.stdout.write(
                f"Submitting {config.count} job(s) {config.src_lang}->{config.tgt_lang} to {config.url} "
                f"(key id {config.key_id}), concurrency {config.concurrency}, wait {config.wait_s:g} s"
                + (", with Idempotency-Key" if config.idempotency else "")
                + ". Ctrl-C stops early."
            )
        report = self._run(config)
        if report is None:
            self.stderr.write("Interrupted before the run finished; no report.")
            return
        if options["json"]:
            self.stdout.write(json.dumps(report.to_dict(), indent=2))
        else:
            self.stdout.write(report.format_text())
        if report.submitted == 0:
            raise CommandError(f"no job was accepted by {config.url}: see the errors above")

    @staticmethod
    def _check_reachable(url: str) -> None:
        """Fail at once, with the address, when nothing answers there: 200 identical connection errors say less."""
        # httpx logs every request at INFO: one line about a health check is noise in this command's output.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        try:
            httpx.get(f"{url}/healthz", timeout=5)
        except httpx.HTTPError as exc:
            raise CommandError(
                f"cannot reach the scheduler at {url} ({type(exc).__name__}: {exc}). "
                "Is it running (`make run`), and is this its address (--url)?"
            ) from None

    def _run(self, config: LoadConfig) -> LoadReport | None:
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(run_load(config))
        return None

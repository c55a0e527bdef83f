"""Run a fleet of simulated lingua nodes against a scheduler (`nodes.simulator`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from argparse import ArgumentParser, ArgumentTypeError
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core import runfile
from nodes.simulator import Fleet, SimulatedNodeConfig, display_url


def default_url() -> str:
    """The node WebSocket of the instance this checkout runs (`make run`'s run file, else WEB_HOST/WEB_PORT)."""
    return settings.WEB_URL.replace("http://", "ws://", 1) + "/ws/node"


def _rate(value: str) -> float:
    """argparse type for a probability: a number in [0, 1], refused with a clear message otherwise."""
    try:
        rate = float(value)
    except ValueError:
        raise ArgumentTypeError(f"{value!r} is not a number") from None
    # `not (0 <= rate <= 1)` also refuses NaN, which compares false with everything.
    if not 0.0 <= rate <= 1.0:
        raise ArgumentTypeError(f"{value} is not a rate between 0 and 1")
    return rate


def _milliseconds(value: str) -> float:
    try:
        ms = float(value)
    except ValueError:
        raise ArgumentTypeError(f"{value!r} is not a number of milliseconds") from None
    if not 0.0 <= ms < float("inf"):
        raise ArgumentTypeError(f"{value} must be a finite number of milliseconds, 0 or more")
    return ms


def _parse_language_set(value: str) -> list[str]:
    languages = [code.strip() for code in value.split(",") if code.strip()]
    if not languages:
        raise CommandError(f"--languages {value!r} names no language")
    return languages


class Command(BaseCommand):
    help = (
        "Connect N simulated lingua nodes to the node WebSocket and keep them registered and heartbeating "
        "until Ctrl-C or --duration. They speak exactly what the real Electron node sends and answer "
        "jobs like a healthy node (success after --processing-ms) unless told to misbehave."
    )
    # The simulator touches neither the database nor project settings, so a half-configured checkout
    # (no SECRET_KEY, no migrations) must not stop it.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--count", type=int, default=1, help="number of nodes (default 1)")
        parser.add_argument(
            "--url",
            help=f"node WebSocket URL (default: the running `make run` instance, else WEB_HOST/WEB_PORT: {default_url()})",
        )
        parser.add_argument("--token", help="node token <id>.<secret>, sent as ?token= like the real client")
        parser.add_argument(
            "--no-token",
            action="store_true",
            help="connect without a token (only for deployments that allow tokenless nodes)",
        )
        parser.add_argument(
            "--auth-header",
            action="store_true",
            help="send the token as 'Authorization: Bearer' instead of ?token= (the real node cannot)",
        )
        parser.add_argument(
            "--languages",
            action="append",
            metavar="CODES",
            help="comma-separated language set, repeatable; node i uses set i mod k (default en,zh)",
        )
        parser.add_argument(
            "--capacity",
            type=int,
            help="send the max_concurrent_jobs extension with this value (omitted by default, like real nodes)",
        )
        parser.add_argument(
            "--heartbeat-interval", type=float, default=15.0, help="seconds between heartbeats (default 15)"
        )
        parser.add_argument(
            "--ack",
            action="store_true",
            help="announce supports_job_ack and send job_ack for every job (real nodes never do)",
        )
        jobs = parser.add_argument_group("job answering")
        jobs.add_argument(
            "--processing-ms",
            type=_milliseconds,
            default=200.0,
            help="mean time from job_assign to job_result in ms (default 200; 0 answers at once)",
        )
        jobs.add_argument(
            "--jitter-ms",
            type=_milliseconds,
            default=0.0,
            help="latency spread: uniform within +/- this many ms around --processing-ms (default 0)",
        )
        jobs.add_argument(
            "--failure-rate",
            type=_rate,
            default=0.0,
            help="share of jobs answered with a PROCESSING_ERROR result (default 0)",
        )
        jobs.add_argument(
            "--model-not-available-rate",
            type=_rate,
            default=0.0,
            help="share of jobs answered at once with MODEL_NOT_AVAILABLE for nmt-m2m100 (default 0)",
        )
        jobs.add_argument(
            "--silent-drop-rate",
            type=_rate,
            default=0.0,
            help="share of jobs never answered, so the job timeout must decide (default 0)",
        )
        jobs.add_argument(
            "--write-off-rate",
            type=_rate,
            default=0.0,
            help="share of successes followed by an empty NO_TEXT_ASSIGNED result for an earlier job (default 0)",
        )
        jobs.add_argument(
            "--no-partials",
            action="store_true",
            help="never send asr_partial, even for jobs with enable_streaming_asr",
        )
        jobs.add_argument(
            "--reject-duplicate-utterance",
            action="store_true",
            help="refuse a second job for the same (session_id, utterance_index), as the real node does",
        )
        jobs.add_argument(
            "--seed", type=int, help="random seed, for reproducible outcomes (node i uses seed+i)"
        )
        parser.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
        parser.add_argument(
            "--connect-timeout",
            type=float,
            default=15.0,
            help="give up (exit 1) if no node has registered within this many seconds (default 15)",
        )
        parser.add_argument(
            "--status-interval", type=float, default=5.0, help="seconds between status lines (default 5)"
        )
        parser.add_argument(
            "--stagger", type=float, default=0.0, help="seconds between node starts (default 0)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        token: str | None = options["token"]
        if token is None and not options["no_token"]:
            raise CommandError(
                "a node token is required: create one with `python manage.py create_node_token --name sim` "
                "and pass it with --token <id>.<secret> (or use --no-token if this deployment allows "
                "tokenless nodes)"
            )
        if token is not None and options["no_token"]:
            raise CommandError("--token and --no-token exclude each other")
        if token is not None:
            token_id, dot, secret = token.partition(".")
            if not dot or not token_id or not secret:
                raise CommandError("--token must look like <id>.<secret>")
        if options["count"] < 1:
            raise CommandError("--count must be at least 1")
        if options["capacity"] is not None and options["capacity"] < 1:
            raise CommandError("--capacity must be at least 1")
        if options["heartbeat_interval"] <= 0:
            raise CommandError("--heartbeat-interval must be positive")
        if options["duration"] is not None and options["duration"] <= 0:
            raise CommandError("--duration must be positive")
        if options["connect_timeout"] <= 0:
            raise CommandError("--connect-timeout must be positive")
        if options["url"] is None:
            options["url"] = default_url()
            self.stderr.write(runfile.describe(settings, redis=False))
        # The rates themselves are checked by argparse (also when call_command passes them as strings);
        # call_command with floats skips argparse types, so check again here.
        rate_flags = {
            "failure_rate": "--failure-rate",
            "model_not_available_rate": "--model-not-available-rate",
            "silent_drop_rate": "--silent-drop-rate",
            "write_off_rate": "--write-off-rate",
        }
        for option, flag in rate_flags.items():
            if not 0.0 <= float(options[option]) <= 1.0:
                raise CommandError(f"{flag} must be between 0 and 1, got {options[option]}")
        for option, flag in (("processing_ms", "--processing-ms"), ("jitter_ms", "--jitter-ms")):
            if not 0.0 <= float(options[option]) < float("inf"):
                raise CommandError(f"{flag} must be a finite number of milliseconds, 0 or more")
        exclusive = sum(
            float(options[name]) for name in ("failure_rate", "model_not_available_rate", "silent_drop_rate")
        )
        if exclusive > 1.0 + 1e-9:
            raise CommandError(
                "--failure-rate, --model-not-available-rate and --silent-drop-rate are shares of the same "
                f"jobs and must add up to at most 1 (they add up to {exclusive:g})"
            )

        language_sets = [_parse_language_set(value) for value in options["languages"] or ["en,zh"]]
        try:
            base = SimulatedNodeConfig(
                url=options["url"],
                token=token,
                auth="header" if options["auth_header"] else "query",
                languages=language_sets[0],
                max_concurrent_jobs=options["capacity"],
                send_ack=options["ack"],
                heartbeat_interval_s=options["heartbeat_interval"],
                processing_ms=float(options["processing_ms"]),
                processing_jitter_ms=float(options["jitter_ms"]),
                failure_rate=float(options["failure_rate"]),
                model_not_available_rate=float(options["model_not_available_rate"]),
                silent_drop_rate=float(options["silent_drop_rate"]),
                write_off_rate=float(options["write_off_rate"]),
                stream_partials=not options["no_partials"],
                reject_duplicate_utterance=options["reject_duplicate_utterance"],
                seed=options["seed"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        fleet = Fleet.uniform(options["count"], base, language_sets=language_sets)

        if options["verbosity"] >= 2:
            simulator_logger = logging.getLogger("nodes.simulator")
            simulator_logger.setLevel(logging.DEBUG if options["verbosity"] >= 3 else logging.INFO)
            if not simulator_logger.hasHandlers():
                simulator_logger.addHandler(logging.StreamHandler())

        auth_text = "no token" if token is None else f"token id {token.partition('.')[0]}"
        self.stdout.write(
            f"Starting {len(fleet.nodes)} simulated node(s) against {display_url(base.url)} ({auth_text}); "
            f"language sets: {' | '.join(','.join(s) for s in language_sets)}. Ctrl-C to stop."
        )
        self.stdout.write(f"Jobs: {_describe_answering(base)}.")
        # asyncio.run turns a Ctrl-C that slips past the signal handler (Windows) into KeyboardInterrupt
        # after cancelling the run, whose finally block has closed the sockets already.
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(self._run(fleet, options))
        self.stdout.write(f"Stopped. {fleet.status_line()}")
        if not self.reached:
            reasons = sorted({node.last_connect_error for node in fleet.nodes if node.last_connect_error})
            raise CommandError(
                f"no node could register at {display_url(base.url)} within {options['connect_timeout']:g} s"
                + (f": {'; '.join(reasons)}" if reasons else "")
                + ". Is the scheduler running (`make run`), and is this its address (--url)?"
            )
        outcomes = fleet.outcome_counts()
        if outcomes:
            self.stdout.write("Job outcomes: " + " ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))

    async def _first_registration(self, fleet: Fleet, stop_event: asyncio.Event, timeout: float) -> bool:
        """Whether a node registered within `timeout` (a Ctrl-C meanwhile counts as reached: the user stopped)."""
        await _wait_first([node.registered.wait() for node in fleet.nodes] + [stop_event.wait()], timeout)
        return fleet.registered_count > 0 or stop_event.is_set()

    async def _run(self, fleet: Fleet, options: dict[str, Any]) -> None:
        stop_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stop_event.set)
                installed.append(signum)
            except (NotImplementedError, RuntimeError):
                pass
        self.reached = True
        try:
            await fleet.start(stagger_s=options["stagger"])
            # A simulator that never reaches the scheduler must say so and fail, not retry forever in silence.
            self.reached = await self._first_registration(fleet, stop_event, options["connect_timeout"])
            if not self.reached:
                return
            await fleet.run_forever(
                status_interval_s=options["status_interval"],
                duration_s=options["duration"],
                stop_event=stop_event,
                out=self.stdout.write,
            )
        finally:
            await fleet.stop()
            for signum in installed:
                loop.remove_signal_handler(signum)


async def _wait_first(awaitables: list[Any], timeout: float) -> None:
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _describe_answering(config: SimulatedNodeConfig) -> str:
    latency = f"{config.processing_ms:g} ms"
    if config.processing_jitter_ms:
        latency += f" +/- {config.processing_jitter_ms:g} ms"
    shares = [
        f"{label} {rate * 100:g}%"
        for label, rate in (
            ("failure", config.failure_rate),
            ("model-not-available", config.model_not_available_rate),
            ("silent-drop", config.silent_drop_rate),
            ("write-off", config.write_off_rate),
        )
        if rate
    ]
    return f"answered after {latency}" + (f"; {', '.join(shares)}" if shares else "; all succeed")

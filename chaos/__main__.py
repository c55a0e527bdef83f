"""`python -m chaos [--scenario short|full]`: start the stack, run the load under the fault schedule, collect,
check, print the invariant table; exit 1 if any invariant was violated, 2 if the run could not be made.

`python -m chaos check <run dir>` judges a finished run again from its files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from chaos.checker import check, deadline_bound_s
from chaos.client import ChaosClient, JsonLines, run_in_thread
from chaos.scenario import SCENARIOS, Scenario
from chaos.sessions import SessionChaosClients, run_sessions_in_thread

if TYPE_CHECKING:
    from chaos.stack import Stack

BASE_DIR = Path(__file__).resolve().parent.parent
TIMING_NAMES = (
    "JOB_PENDING_TIMEOUT_S", "JOB_TIMEOUT_S", "JOB_ACK_TIMEOUT_S", "JOB_MAX_ATTEMPTS", "JOB_SWEEP_INTERVAL_S",
    "NODE_HEARTBEAT_INTERVAL_S", "NODE_HEARTBEAT_TIMEOUT_S", "POOL_LEASE_TTL_S", "POOL_LEASE_RENEW_S",
    "AUDIT_INTERVAL_S",
)  # fmt: skip


def say(text: str) -> None:
    print(text, flush=True)


def wait_for_fleet(stack: Stack, expected: int, timeout_s: float) -> None:
    from core.redis import keys

    client = stack.env.client()
    k = keys()
    deadline = time.monotonic() + timeout_s
    ready = 0
    while time.monotonic() < deadline:
        node_ids = client.smembers(k.nodes_all)
        ready = sum(client.hget(k.node_meta(node_id), "status") == "ready" for node_id in node_ids)
        if ready >= expected:
            return
        time.sleep(0.5)
    raise RuntimeError(f"only {ready} of {expected} nodes became ready within {timeout_s:g} s")


def run(scenario: Scenario, run_dir: Path, database_url: str | None) -> int:
    from chaos.collect import collect
    from chaos.faults import FaultRunner
    from chaos.sampler import Sampler
    from chaos.stack import chaos_stack

    started = time.monotonic()
    say(f"==> chaos run '{scenario.name}' in {run_dir}")
    with chaos_stack(scenario, run_dir, database_url) as stack:
        from django.conf import settings

        timings = {name: float(getattr(settings, name)) for name in TIMING_NAMES}
        (run_dir / "timings.json").write_text(json.dumps(timings, indent=1))
        fleet = sum(scenario.fleet.values())
        say(f"==> stack up in {time.monotonic() - started:.1f} s: Redis {stack.env.redis.url}, web {', '.join(stack.urls)}, "
            f"2 workers + beat; waiting for {fleet} nodes")  # fmt: skip
        wait_for_fleet(stack, fleet, 60)
        history = JsonLines(run_dir / "history.jsonl")
        sampler = Sampler(stack.env.redis.url, settings.REDIS_KEY_PREFIX, history)
        sampler.start()
        # A client gives up on a job well after its bound (the checker counts that as no terminal answer).
        follow_s = deadline_bound_s(timings) + 15
        client = ChaosClient(stack.urls, stack.env.api_key, run_dir / "client.jsonl", follow_s)
        say(f"==> load: {scenario.rate_per_s:g} jobs/s for {scenario.load_s:g} s; faults:")
        load_started = time.monotonic()
        thread = run_in_thread(client, scenario.rate_per_s, scenario.load_s)
        talkers = SessionChaosClients([web.ws_url for web in stack.webs], stack.env.api_key, run_dir / "sessions.jsonl",
                                      scenario.sessions, follow_s)  # fmt: skip
        talking = run_sessions_in_thread(talkers, scenario.load_s)
        FaultRunner(stack, history, settings.REDIS_KEY_PREFIX).run(scenario.schedule(), load_started, say)
        thread.join(scenario.load_s + follow_s + 30)
        talking.join(follow_s + 60)
        # The mirror is judged once the stack has had its documented time to repair it: one reconciler round
        # after the grace it gives young rows (zero where the stack has no reconciler).
        settle_s = float(getattr(settings, "JOB_RECONCILE_GRACE_S", 0)) + float(getattr(settings, "JOB_RECONCILE_INTERVAL_S", 0))
        say(f"==> load over after {time.monotonic() - load_started:.1f} s: {client.accepted} accepted, {client.ended} ended; "
            f"{talkers.sent} utterances sent, {talkers.finals} final frames; "
            f"collecting after {settle_s:g} s for the mirror to settle")  # fmt: skip
        time.sleep(settle_s)
        final = collect(run_dir, stack.urls, stack.env.api_key, stack.env.redis.url, settings.REDIS_KEY_PREFIX, 30)
        sampler.stop()
        say(f"==> at rest after {final['rest_wait_s']} s, audit written after {final['audit_wait_s']} s")
    report = check(run_dir)
    say(report.format())
    say(f"==> {scenario.name} run took {time.monotonic() - started:.0f} s; files in {run_dir}")
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", nargs="?", default="run", choices=("run", "check"))
    parser.add_argument("run_dir", nargs="?", help="for `check`: the folder of a finished run")
    parser.add_argument("--scenario", default="short", choices=sorted(SCENARIOS))
    parser.add_argument("--out", help="folder for the run's files (default var/chaos/<scenario>-<time>)")
    parser.add_argument("--database-url", help="database of the stack (default: a SQLite file in the run folder)")
    args = parser.parse_args(argv)
    if args.command == "check":
        if not args.run_dir:
            parser.error("check needs the run folder")
        report = check(Path(args.run_dir))
        say(report.format())
        return 0 if report.ok else 1
    scenario = SCENARIOS[args.scenario]
    run_dir = Path(args.out) if args.out else BASE_DIR / "var" / "chaos" / f"{scenario.name}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        return run(scenario, run_dir, args.database_url)
    except Exception as exc:  # noqa: BLE001 - the run could not be made: say why, exit 2
        say(f"chaos run could not be completed: {type(exc).__name__}: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())

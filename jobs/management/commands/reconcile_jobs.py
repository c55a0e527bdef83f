"""Settle the audit mirror's live job rows against Redis now, as the periodic task does every
JOB_RECONCILE_INTERVAL_S (`jobs/reconcile.py`): an end that reached Redis but not the database is recorded
again, a job Redis no longer knows is settled FAILED STATE_LOST. The entries go through the audit stream;
`--write` also applies them at once instead of leaving that to the audit writer."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from core import audit
from core.redis import UNAVAILABLE
from jobs.reconcile import reconcile_jobs


class Command(BaseCommand):
    help = "Settle live job rows of the database against Redis (ends not recorded, jobs Redis lost)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--grace-s", type=float, default=None,
            help="only rows created longer ago than this (default JOB_RECONCILE_GRACE_S)",
        )  # fmt: skip
        parser.add_argument("--write", action="store_true", help="apply the audit entries now (the writer's work)")

    def handle(self, *args: Any, grace_s: float | None, write: bool, **options: Any) -> None:
        if grace_s is not None and grace_s < 0:
            raise CommandError("--grace-s must be 0 or more")
        try:
            outcome = reconcile_jobs(grace_s=grace_s)
            written = audit.drain() if write else 0
        except UNAVAILABLE as exc:
            raise CommandError(f"Redis is unavailable ({exc}); nothing was settled") from None
        self.stdout.write(
            f"checked {outcome.checked} live rows: {outcome.repaired} ends recorded again, "
            f"{outcome.lost} settled FAILED STATE_LOST" + (f"; {written} audit entries written" if write else "")
        )

"""Delete old history from the audit mirror: ended jobs with their attempts, node events, and pool
configuration versions (the newest ones always stay).

Rows go in batches, each its own short transaction, so a large table is never locked for the whole run and
the audit writer keeps committing in between.
"""

from __future__ import annotations

from argparse import ArgumentParser
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from jobs.models import Job, JobAttempt
from nodes.models import NodeEvent
from pools.models import PoolConfigVersion

BATCH_SIZE = 5000
# The newest versions stay whatever their age: they explain the configuration running now.
KEEP_POOL_VERSIONS = 10


@dataclass
class Purged:
    jobs: int = 0
    attempts: int = 0
    node_events: int = 0
    pool_versions: int = 0


def old_jobs(cutoff: datetime) -> QuerySet[Job]:
    # A job that never ended is counted by its creation: jobs live seconds, so one created days ago without
    # an end lost its final audit entry (dropped while Redis was down) and would otherwise stay forever.
    return Job.objects.filter(Q(ended_at__lt=cutoff) | Q(ended_at__isnull=True, created_at__lt=cutoff))


def old_node_events(cutoff: datetime) -> QuerySet[NodeEvent]:
    return NodeEvent.objects.filter(at__lt=cutoff)


def old_pool_versions(cutoff: datetime) -> QuerySet[PoolConfigVersion]:
    by_age = PoolConfigVersion.objects.order_by("-generated_at", "-version")
    newest = list(by_age.values_list("pk", flat=True)[:KEEP_POOL_VERSIONS])
    return PoolConfigVersion.objects.filter(generated_at__lt=cutoff).exclude(pk__in=newest)


def delete_in_batches(queryset: QuerySet[Any], batch_size: int) -> dict[str, int]:
    """Delete every row of `queryset` (and what cascades), `batch_size` rows per transaction; counts by model."""
    model: type[Model] = queryset.model
    deleted: dict[str, int] = {}
    while True:
        # Unordered: any batch of matches will do, and sorting them all for each batch costs a scan.
        pks = list(queryset.order_by().values_list("pk", flat=True)[:batch_size])
        if not pks:
            return deleted
        _, per_model = model.objects.filter(pk__in=pks).delete()
        for label, count in per_model.items():
            deleted[label] = deleted.get(label, 0) + count


def purge(cutoff: datetime, *, dry_run: bool = False, batch_size: int = BATCH_SIZE) -> Purged:
    """Delete (or with `dry_run` only count) the history older than `cutoff`.

    1. Jobs that ended before the cutoff, or never ended and were created before it; their attempts cascade.
    2. Node events from before the cutoff.
    3. Pool configuration versions from before the cutoff, except the newest KEEP_POOL_VERSIONS.
    """
    jobs, events, versions = old_jobs(cutoff), old_node_events(cutoff), old_pool_versions(cutoff)
    if dry_run:
        return Purged(
            jobs=jobs.count(),
            attempts=JobAttempt.objects.filter(job__in=jobs).count(),
            node_events=events.count(),
            pool_versions=versions.count(),
        )
    deleted_jobs = delete_in_batches(jobs, batch_size)
    return Purged(
        jobs=deleted_jobs.get(Job._meta.label, 0),
        attempts=deleted_jobs.get(JobAttempt._meta.label, 0),
        node_events=delete_in_batches(events, batch_size).get(NodeEvent._meta.label, 0),
        pool_versions=delete_in_batches(versions, batch_size).get(PoolConfigVersion._meta.label, 0),
    )


class Command(BaseCommand):
    help = (
        "Delete jobs (with their attempts) that ended more than N days ago, node events older than N days, "
        f"and pool configuration versions older than N days except the newest {KEEP_POOL_VERSIONS}."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--older-than-days",
            type=int,
            required=True,
            help="delete history older than this many days (>= 1)",
        )
        parser.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
        parser.add_argument(
            "--batch-size",
            type=int,
            default=BATCH_SIZE,
            help=f"rows per delete transaction (default {BATCH_SIZE})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days: int = options["older_than_days"]
        if days < 1:
            raise CommandError("--older-than-days must be 1 or more")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be 1 or more")
        cutoff = timezone.now() - timedelta(days=days)
        purged = purge(cutoff, dry_run=options["dry_run"], batch_size=options["batch_size"])
        verb = "Would delete" if options["dry_run"] else "Deleted"
        self.stdout.write(
            f"{verb} history from before {cutoff:%Y-%m-%d %H:%M:%S} UTC ({days} days):\n"
            f"  jobs:                   {purged.jobs} (with {purged.attempts} attempts)\n"
            f"  node events:            {purged.node_events}\n"
            f"  pool config versions:   {purged.pool_versions} (the newest {KEEP_POOL_VERSIONS} are always kept)"
        )

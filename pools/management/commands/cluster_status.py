"""Print what the cluster's shared state says right now: web instances, the pool leader and its epoch, the
pool configuration with live sizes, and nodes by status."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core import runfile
from core.redis import UNAVAILABLE, redis_url, run_sync
from pools import overview


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60 % 60, seconds // 3600 % 24, seconds // 86400
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes} min"


class Command(BaseCommand):
    help = "Show web instances, the pool leader and epoch, the pools with live sizes, and nodes by status."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stderr.write(runfile.describe(settings, web=False))
        try:
            status = run_sync(overview.read_cluster_status)
        except UNAVAILABLE as exc:
            raise CommandError(
                f"Redis at {runfile.redis_address(redis_url())} is unavailable: {exc}. Is `make run` running, "
                "or is REDIS_URL set to the cluster's Redis?"
            ) from None
        for line in self.report(status):
            self.stdout.write(line)

    def report(self, status: overview.ClusterStatus) -> list[str]:
        now = status.read_at
        lines = [f"Instances ({len(status.instances)}):"]
        if not status.instances:
            lines.append("  none has advertised itself (no web instance is running)")
        rows = [("INSTANCE", "HOST", "PID", "UP", "NODE SOCKETS", "SEEN")]
        for instance in status.instances:
            seen = f"{duration(now - instance.last_seen)} ago"
            if not instance.advertised:
                rows.append((instance.instance_id, "-", "-", "-", "-", f"{seen} (stopped advertising)"))
                continue
            uptime = instance.uptime_s(now)
            rows.append(
                (
                    instance.instance_id,
                    instance.host,
                    str(instance.pid),
                    duration(uptime) if uptime is not None else "-",
                    str(instance.node_sockets),
                    seen,
                )
            )
        if status.instances:
            widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
            lines += [
                "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                for row in rows
            ]

        pools = status.pools
        if pools.leader is None:
            leader = self.style.WARNING("none") + " (no process holds the lease: pools are not rebuilt)"
        else:
            leader = f"{pools.leader}, epoch {pools.leader_epoch}"
        lines.append(
            f"Leader: {leader}; epochs granted {pools.highest_epoch}, leader changes {pools.leader_changes}, "
            f"stale-epoch writes refused {pools.stale_refusals}"
        )
        written = (
            f"{pools.generated_at:%Y-%m-%d %H:%M:%S} UTC by {pools.generated_by}"
            if pools.generated_at
            else "never"
        )
        lines.append(f"Pool configuration: v{pools.version}, epoch {pools.epoch}, written {written}")
        lines += [f"  {line}" for line in overview.pool_table(pools.pools)]

        counts = status.nodes_by_status
        listed = ", ".join(f"{count} {name}" for name, count in counts.items())
        lines.append(f"Nodes: {listed} ({sum(counts.values())} in all)")
        return lines

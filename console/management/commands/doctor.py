"""Check a deployment: Redis, clocks, database, channel layer, Celery worker and beat; print what is wrong
and how to fix it. Exit status 1 when any check fails, 0 otherwise (warnings included)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from console import doctor
from console.findings import Finding
from core import runfile


class Command(BaseCommand):
    help = (
        "Check this deployment (Redis, clocks, database and migrations, channel layer, Celery worker and beat) "
        "and print one line per check with a fix for each problem. Exits 1 when a check fails."
    )
    # The system checks are one of the findings: a settings error must be reported with the rest, not stop
    # the command before it can say anything else.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--timeout", type=float, default=2.0,
            help="seconds to wait for Redis, the channel layer and worker pings (default 2)",
        )  # fmt: skip
        parser.add_argument("--json", action="store_true", help="print the findings as one JSON document")
        parser.add_argument(
            "--audit-lag-s", type=float, default=doctor.AUDIT_LAG_S,
            help=f"audit entries undelivered for longer mean beat or the worker is not running (default {doctor.AUDIT_LAG_S:g})",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        self.stderr.write(runfile.describe(settings, web=False))
        findings = doctor.diagnose(timeout=options["timeout"], audit_lag_s=options["audit_lag_s"])
        failures = sum(finding.failed for finding in findings)
        if options["json"]:
            document = {"ok": failures == 0, "findings": [finding.as_dict() for finding in findings]}
            self.stdout.write(json.dumps(document, indent=2))
        else:
            for line in self.report(findings):
                self.stdout.write(line)
        if failures:
            # SystemExit rather than CommandError: the findings are the message, a traceback-style
            # "CommandError: ..." line would only repeat them.
            raise SystemExit(1)

    def report(self, findings: list[Finding]) -> list[str]:
        styles = {
            "OK": self.style.SUCCESS,
            "WARN": self.style.WARNING,
            "FAIL": self.style.ERROR,
            "SKIPPED": str,
        }
        lines = []
        for finding in findings:
            status = styles[finding.status](finding.status.ljust(4))
            lines.append(f"{status}  {finding.name}: {finding.detail}")
            if finding.status in ("WARN", "FAIL") and finding.fix:
                lines.append(f"  fix: {finding.fix}")
        counts = {status: sum(f.status == status for f in findings) for status in ("FAIL", "WARN", "SKIPPED")}
        if counts["FAIL"]:
            summary = f"{counts['FAIL']} failed, {counts['WARN']} warning(s), {counts['SKIPPED']} skipped: see the fix lines above."
        elif counts["WARN"]:
            summary = f"No failures; {counts['WARN']} warning(s)."
        else:
            summary = "All checks passed."
        return [*lines, "", summary]

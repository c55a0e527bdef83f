"""Create a REST API key and print it, once."""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from access.models import ApiKey, Scope
from core import runfile


class Command(BaseCommand):
    help = (
        "Create an API key for the REST API and print it once (only its hash is stored). "
        f"Scopes: {', '.join(Scope.values)}."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--name", required=True, help="who or what uses the key, e.g. 'gateway-prod'")
        parser.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            required=True,
            metavar="SCOPE",
            help=f"a scope the key holds; repeat for several ({', '.join(Scope.values)})",
        )
        parser.add_argument("--expires-days", type=float, help="expire after this many days (default: never)")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stderr.write(runfile.describe(settings, redis=False, web=False, database=True))
        scopes: list[str] = options["scopes"]
        unknown = sorted(set(scopes) - set(Scope.values))
        if unknown:
            raise CommandError(
                f"unknown --scope {', '.join(unknown)}; choose from: {', '.join(Scope.values)}"
            )
        days: float | None = options["expires_days"]
        if days is not None and days <= 0:
            raise CommandError("--expires-days must be more than 0")
        expires_at = timezone.now() + timedelta(days=days) if days is not None else None

        key, plaintext = ApiKey.issue(options["name"], scopes, expires_at=expires_at)
        rule = "-" * 64
        lines = [
            rule,
            f"Created API key {key.id} ({key.name}).",
            "This key is shown only this once; it cannot be recovered, only revoked and replaced:",
            f"    key:      {plaintext}",
            f"    header:   Authorization: Bearer {plaintext}",
            f"    scopes:   {', '.join(key.scopes)}",
            f"    expires:  {expires_at.isoformat(timespec='seconds') if expires_at else 'never'}",
            rule,
        ]
        self.stdout.write("\n".join(lines))
        self.stdout.write(self.style.WARNING("Copy the key now: it will not be shown again."))

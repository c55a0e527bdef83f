"""Create a node token and print it, once, with the URL a node connects to."""

from __future__ import annotations

import socket
from argparse import ArgumentParser
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core import runfile
from nodes.models import NodeToken
from nodes.services import NODE_ID_RE

# Addresses a server binds to but a node cannot dial.
WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}


class Command(BaseCommand):
    help = (
        "Create a node token and print it once (only its hash is stored), with the node URL "
        "ws://HOST:PORT/ws/node?token=<token>."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--name", required=True, help="what the token is for, e.g. the machine's name")
        parser.add_argument("--node-id", default="", help="bind the token to this node id (default: any id)")
        parser.add_argument("--expires-days", type=float, help="expire after this many days (default: never)")
        parser.add_argument(
            "--host",
            help="HOST:PORT nodes use to reach this scheduler in the printed URL (default: WEB_HOST:WEB_PORT)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.stderr.write(runfile.describe(settings, redis=False, web=False, database=True))
        node_id: str = options["node_id"]
        if node_id and not NODE_ID_RE.match(node_id):
            raise CommandError(f"--node-id {node_id!r}: use only letters, digits and . _ : - (at most 64)")
        days: float | None = options["expires_days"]
        if days is not None and days <= 0:
            raise CommandError("--expires-days must be more than 0")
        expires_at = timezone.now() + timedelta(days=days) if days is not None else None

        token, plaintext = NodeToken.issue(options["name"], node_id=node_id, expires_at=expires_at)
        url = f"ws://{options['host'] or self._default_host()}/ws/node?token={quote(plaintext, safe='')}"
        rule = "-" * 64
        lines = [
            rule,
            f"Created node token {token.id} ({token.name}).",
            "This token is shown only this once; it cannot be recovered, only revoked and replaced:",
            f"    token:    {plaintext}",
            f"    node URL: {url}",
            f"    node id:  {node_id or 'any'}",
            f"    expires:  {expires_at.isoformat(timespec='seconds') if expires_at else 'never'}",
            rule,
        ]
        self.stdout.write("\n".join(lines))
        self.stdout.write(self.style.WARNING("Copy the token now: it will not be shown again."))

    @staticmethod
    def _default_host() -> str:
        host = settings.WEB_HOST
        if host in WILDCARD_HOSTS:
            host = socket.gethostname()
        return f"{host}:{settings.WEB_PORT}"

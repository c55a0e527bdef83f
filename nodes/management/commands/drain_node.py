"""Drain a node (it finishes its jobs and gets no new one; the flag survives reconnects) or undo it."""

from __future__ import annotations

import getpass
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core import runfile
from core.redis import UNAVAILABLE, run_sync
from nodes import services


class Command(BaseCommand):
    help = "Drain a node so it takes no new job (--undo to undrain); prints its status before and after."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("node_id", help="the node's id, e.g. node-1A2B3C4D")
        parser.add_argument("--undo", action="store_true", help="undrain instead: the node takes jobs again")
        parser.add_argument("--reason", default="", help="why, for the node's event history")
        parser.add_argument("--actor", default="", help="who, for the event history (default: the OS user)")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stderr.write(runfile.describe(settings, web=False))
        node_id = options["node_id"]
        actor = options["actor"] or f"cli:{getpass.getuser()}"
        action = services.undrain_node if options["undo"] else services.drain_node
        try:
            before = run_sync(services.get_node, node_id)
            if before is None:
                raise CommandError(f"No node {node_id!r} is registered (see `manage.py cluster_status`).")
            run_sync(action, node_id, actor, options["reason"])
            after = run_sync(services.get_node, node_id)
        except services.NodeNotFound:
            raise CommandError(f"No node {node_id!r} is registered (see `manage.py cluster_status`).") from None
        except UNAVAILABLE as exc:
            raise CommandError(f"Redis is unavailable, nothing was changed: {exc}") from None
        verb = "undrained" if options["undo"] else "drained"
        status = after["status"] if after else "unknown"
        self.stdout.write(f"{node_id} {verb}: {before['status']} -> {status} (running {after['running'] if after else 0} jobs)")

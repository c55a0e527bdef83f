"""Create the first superuser on a fresh database, once, so `make run` ends with a working admin login."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

USERNAME = "admin"


class Command(BaseCommand):
    help = (
        "If no superuser exists, create `admin` with a random password and print it once (and write it to "
        "ADMIN_PASSWORD_FILE when set). Does nothing when a superuser exists, so it is safe to run on every start."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        username_field = user_model.USERNAME_FIELD
        with transaction.atomic():
            existing = user_model.objects.filter(is_superuser=True).order_by("pk").first()
            if existing is not None:
                name = getattr(existing, username_field)
                self.stdout.write(
                    f"An admin account exists ({name}). "
                    f"Forgot its password? python manage.py changepassword {name}"
                )
                return
            if user_model.objects.filter(**{username_field: USERNAME}).exists():
                # Promoting someone else's account silently would be a surprise; leave the choice to a person.
                self.stderr.write(
                    self.style.WARNING(
                        f"A user named {USERNAME!r} exists but is not a superuser, so no admin was created. "
                        "Create one with: python manage.py createsuperuser"
                    )
                )
                return
            password = secrets.token_urlsafe(12)
            user_model.objects.create_superuser(**{username_field: USERNAME, "password": password})
        saved = self.save_password(password)
        rule = "-" * 64
        lines = [
            rule,
            "Created the admin account. This password is shown only this once:",
            f"    username: {USERNAME}",
            f"    password: {password}",
        ]
        if saved:
            lines.append(f"It is also in {saved} (readable by you only) until you change it.")
        lines += [f"To set another later: python manage.py changepassword {USERNAME}", rule]
        self.stdout.write("\n".join(lines))

    def save_password(self, password: str) -> Path | None:
        """Keep the one-time password where the user finds it again once the terminal has scrolled (mode 0600:
        the same trust as the local secret key beside it)."""
        if not settings.ADMIN_PASSWORD_FILE:
            return None
        path = Path(settings.ADMIN_PASSWORD_FILE)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(f"username: {USERNAME}\npassword: {password}\n")
        return path

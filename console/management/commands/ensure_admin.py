"""Create the first superuser on a fresh database, once, so `make run` ends with a working admin login."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

USERNAME = "admin"


class Command(BaseCommand):
    help = (
        "If no superuser exists, create `admin` with a random password and print it once. "
        "Does nothing when a superuser exists, so it is safe to run on every start."
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
        rule = "-" * 64
        self.stdout.write(
            "\n".join(
                [
                    rule,
                    "Created the admin account. This password is shown only this once:",
                    f"    username: {USERNAME}",
                    f"    password: {password}",
                    f"To set another later: python manage.py changepassword {USERNAME}",
                    rule,
                ]
            )
        )

"""Bearer credentials of the form `<id>.<secret>` (node tokens, API keys).

The id is public and may be logged; only a SHA-256 of the secret is stored. The secret is 256 random bits,
so a fast hash is enough: there is nothing to brute-force, and verification stays cheap on every handshake.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Any, Self

from django.utils import timezone


def mint(prefix: str) -> tuple[str, str]:
    """A new (public id, secret) pair; the id starts with `prefix` so a leaked string says what it is."""
    return f"{prefix}{secrets.token_hex(6)}", secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split(credential: str) -> tuple[str, str] | None:
    """(id, secret) of a presented credential, or None when it is not shaped like one."""
    public_id, dot, secret = credential.strip().partition(".")
    if not dot or not public_id or not secret or len(credential) > 200:
        return None
    return public_id, secret


def public_id(presented: str | None) -> str:
    """The id of a presented credential, for log lines; empty unless it is shaped `<id>.<secret>`, since a
    credential without its dot is all secret (the old log line put 32 characters of it in `token_id`)."""
    parts = split(presented or "")
    return parts[0][:32] if parts else ""


def matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


class StoredCredential:
    """What the models of node tokens and API keys share: looked up by a presented `<id>.<secret>`, usable
    while neither revoked nor expired. Mixed into a model with `secret_hash`, `expires_at` and `revoked_at`."""

    objects: Any
    secret_hash: str
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def authenticate(cls, presented: str) -> Self | None:
        """The active credential matching a presented `<id>.<secret>`, or None."""
        parts = split(presented)
        if parts is None:
            return None
        found = cls.objects.filter(pk=parts[0]).first()
        if found is None or not matches(parts[1], found.secret_hash) or not found.is_active():
            return None
        return found

    def is_active(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

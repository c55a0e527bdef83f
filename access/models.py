"""API keys for REST clients and operators' scripts."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

from core import credentials


class Scope(models.TextChoices):
    JOBS_WRITE = "jobs:write"
    JOBS_READ = "jobs:read"
    NODES_READ = "nodes:read"
    NODES_WRITE = "nodes:write"
    POOLS_READ = "pools:read"
    SESSIONS = "sessions"


class ApiKey(credentials.StoredCredential, models.Model):
    PREFIX = "ak_"

    id = models.CharField(primary_key=True, max_length=32, editable=False)
    name = models.CharField(max_length=100)
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list, help_text="Any of: " + ", ".join(Scope.values))
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by = models.CharField(max_length=150, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @classmethod
    def issue(
        cls, name: str, scopes: list[str], *, expires_at: datetime | None = None, created_by=None
    ) -> tuple[ApiKey, str]:
        """Create a key; the plaintext is returned once and never stored."""
        unknown = sorted(set(scopes) - set(Scope.values))
        if unknown:
            raise ValueError(f"unknown scopes: {', '.join(unknown)} (known: {', '.join(Scope.values)})")
        public_id, secret = credentials.mint(cls.PREFIX)
        key = cls.objects.create(
            id=public_id,
            name=name,
            secret_hash=credentials.hash_secret(secret),
            scopes=sorted(set(scopes)),
            expires_at=expires_at,
            created_by=created_by,
        )
        return key, f"{public_id}.{secret}"

    @classmethod
    def revoke(cls, keys: models.QuerySet[ApiKey], actor: str) -> int:
        """Revoke keys; a conditional UPDATE, so a key revoked twice keeps its first revocation."""
        return keys.filter(revoked_at__isnull=True).update(revoked_at=timezone.now(), revoked_by=actor)

    def allows(self, scope: str) -> bool:
        return scope in self.scopes

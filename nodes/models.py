"""Audit mirror of the node fleet. Live state (status, load, capabilities) lives in Redis; these rows are
written off the socket path by the audit writer and by operator actions."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

from core import credentials


class NodeStatus(models.TextChoices):
    REGISTERING = "registering"
    READY = "ready"
    DEGRADED = "degraded"
    DRAINING = "draining"
    OFFLINE = "offline"


class NodeToken(credentials.StoredCredential, models.Model):
    """A credential a node presents on connect: `<id>.<secret>`, stored hashed, optionally bound to one node id."""

    PREFIX = "nt_"

    id = models.CharField(primary_key=True, max_length=32, editable=False)
    name = models.CharField(max_length=100)
    secret_hash = models.CharField(max_length=64, editable=False)
    node_id = models.CharField(
        max_length=64, blank=True, help_text="If set, only this node id may register with the token."
    )
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
        cls, name: str, *, node_id: str = "", expires_at: datetime | None = None, created_by=None
    ) -> tuple[NodeToken, str]:
        """Create a token; the plaintext is returned once and never stored."""
        public_id, secret = credentials.mint(cls.PREFIX)
        token = cls.objects.create(
            id=public_id,
            name=name,
            secret_hash=credentials.hash_secret(secret),
            node_id=node_id,
            expires_at=expires_at,
            created_by=created_by,
        )
        return token, f"{public_id}.{secret}"

    @property
    def expires_at_ms(self) -> int:
        return int(self.expires_at.timestamp() * 1000) if self.expires_at else 0


class Node(models.Model):
    node_id = models.CharField(primary_key=True, max_length=64)
    token = models.ForeignKey(NodeToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="nodes")
    status = models.CharField(max_length=16, choices=NodeStatus.choices, default=NodeStatus.REGISTERING)
    pool = models.CharField(max_length=200, blank=True, db_index=True)
    languages = models.JSONField(default=list, blank=True)
    transport = models.CharField(max_length=8, default="ws")
    version = models.CharField(max_length=64, blank=True)
    platform = models.CharField(max_length=32, blank=True)
    capabilities = models.JSONField(default=dict, blank=True, help_text="Latest capability snapshot.")
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["node_id"]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return self.node_id


class NodeEvent(models.Model):
    class Kind(models.TextChoices):
        REGISTERED = "registered"
        REJECTED = "rejected"
        STATUS_CHANGED = "status_changed"
        DISCONNECTED = "disconnected"
        SUPERSEDED = "superseded"
        DRAINED = "drained"
        UNDRAINED = "undrained"
        TOKEN_REVOKED = "token_revoked"

    node = models.ForeignKey(Node, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    node_ref = models.CharField(max_length=64, blank=True, db_index=True, help_text="Node id as claimed.")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)
    reason = models.CharField(max_length=200, blank=True)
    actor = models.CharField(max_length=150, blank=True, help_text="Who caused it: a user, 'system' or a node.")
    instance = models.CharField(max_length=100, blank=True)
    details = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["node", "-at"])]

    def __str__(self) -> str:
        return f"{self.node_ref} {self.kind} {self.from_status}->{self.to_status}"

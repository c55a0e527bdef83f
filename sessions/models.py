"""The audit row of each client session (the live state is in Redis: sessions/registry.py)."""

from __future__ import annotations

from django.db import models


class SessionRecord(models.Model):
    # The protocol's session id is only 32 random bits (`s-` + 8 hex), so it repeats over a deployment's
    # life; `uid` is the session's own 128-bit id and the key of its audit entries.
    uid = models.CharField(max_length=32, unique=True, editable=False)
    session_id = models.CharField(max_length=16, db_index=True)
    api_key_id = models.CharField(max_length=32, blank=True, help_text="empty for sessions of open access")
    client_version = models.CharField(max_length=128, blank=True)
    platform = models.CharField(max_length=64, blank=True)
    mode = models.CharField(max_length=16, blank=True)
    src_lang = models.CharField(max_length=16, blank=True)
    tgt_lang = models.CharField(max_length=16, blank=True)
    lang_a = models.CharField(max_length=16, blank=True)
    lang_b = models.CharField(max_length=16, blank=True)
    trace_id = models.CharField(max_length=128, blank=True)
    origin = models.CharField(max_length=200, blank=True)
    instance = models.CharField(max_length=100, blank=True)
    opened_at = models.DateTimeField(db_index=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=64, blank=True)
    utterances = models.PositiveIntegerField(default=0)
    results = models.PositiveIntegerField(default=0, help_text="translation_result frames sent")
    missing = models.PositiveIntegerField(default=0, help_text="missing_result frames sent")

    class Meta:
        ordering = ["-opened_at"]
        verbose_name = "session"

    def __str__(self) -> str:
        return f"{self.session_id} ({self.opened_at:%Y-%m-%d %H:%M:%S})"

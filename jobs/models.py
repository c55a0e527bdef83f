"""Audit mirror of jobs: metadata and outcome only. Live job data (audio, texts, partials) lives in Redis until
the job ends plus a retention window; these rows are written off the live path by the audit writer
(`jobs/audit.py`) and never hold audio or texts."""

from __future__ import annotations

from django.db import models


# Labels are the codes themselves: operators match what the admin shows against the API, logs and metrics.
class JobState(models.TextChoices):
    NEW = "NEW", "NEW"
    SELECTING = "SELECTING", "SELECTING"
    RESERVED = "RESERVED", "RESERVED"
    DISPATCHED = "DISPATCHED", "DISPATCHED"
    ACKED = "ACKED", "ACKED"
    DONE = "DONE", "DONE"
    FAILED = "FAILED", "FAILED"
    CANCELLED = "CANCELLED", "CANCELLED"


TERMINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


class FailureReason(models.TextChoices):
    NO_AVAILABLE_NODE = "NO_AVAILABLE_NODE", "NO_AVAILABLE_NODE"
    POOL_EMPTY = "POOL_EMPTY", "POOL_EMPTY"
    RESERVE_FAILED = "RESERVE_FAILED", "RESERVE_FAILED"
    DISPATCH_FAILED = "DISPATCH_FAILED", "DISPATCH_FAILED"
    ACK_TIMEOUT = "ACK_TIMEOUT", "ACK_TIMEOUT"
    JOB_TIMEOUT = "JOB_TIMEOUT", "JOB_TIMEOUT"
    NODE_OFFLINE = "NODE_OFFLINE", "NODE_OFFLINE"
    NODE_ERROR = "NODE_ERROR", "NODE_ERROR"
    MODEL_NOT_AVAILABLE = "MODEL_NOT_AVAILABLE", "MODEL_NOT_AVAILABLE"
    CANCELLED = "CANCELLED", "CANCELLED"
    DEPENDENCY_DOWN = "DEPENDENCY_DOWN", "DEPENDENCY_DOWN"
    # Redis lost the job's live state before it ended (jobs/reconcile.py); never set by the live path.
    STATE_LOST = "STATE_LOST", "STATE_LOST"


class Job(models.Model):
    """One job as last reported by the live path; `seq` is the per-job change counter of the newest entry applied."""

    job_id = models.CharField(primary_key=True, max_length=64)
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.NEW)
    reason = models.CharField(max_length=32, choices=FailureReason.choices, blank=True)
    src_lang = models.CharField(max_length=32, blank=True)
    tgt_lang = models.CharField(max_length=32, blank=True)
    pool = models.CharField(max_length=200, blank=True)
    node_id = models.CharField(max_length=64, blank=True, help_text="Node of the current (or last) attempt.")
    attempt_count = models.PositiveSmallIntegerField(
        default=0,
        help_text="Attempts begun; attempt ids count from 1, so this is also the current attempt id.",
    )
    session_id = models.CharField(max_length=128, blank=True)
    utterance_index = models.IntegerField(null=True, blank=True)
    trace_id = models.CharField(max_length=128, blank=True)
    pinned_node = models.CharField(
        max_length=64, blank=True, help_text="Node the submitter pinned the job to."
    )
    created_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True, help_text="{code, message} of a failed job.")
    timings = models.JSONField(default=dict, blank=True, help_text="Named times in ms, as the live path reports them.")
    # Null until the first job entry arrives: an attempt entry can come first and creates the row bare.
    seq = models.BigIntegerField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-job_id"]
        # Each filter of the history (admin and API) is followed by the newest-first ordering, so the filtered
        # column leads and created_at follows; the last one serves the unfiltered keyset pages.
        indexes = [
            models.Index(fields=["state", "-created_at"], name="job_state_created"),
            models.Index(fields=["reason", "-created_at"], name="job_reason_created"),
            models.Index(fields=["pool", "-created_at"], name="job_pool_created"),
            models.Index(fields=["node_id", "-created_at"], name="job_node_created"),
            models.Index(fields=["-created_at", "-job_id"], name="job_created"),
            models.Index(fields=["ended_at"], name="job_ended"),
        ]

    def __str__(self) -> str:
        return self.job_id


class JobAttempt(models.Model):
    """One placement of a job on one node; a failed attempt is followed by another on a different node."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="attempts")
    attempt_id = models.PositiveSmallIntegerField()
    node_id = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=16, choices=JobState.choices)
    reason = models.CharField(max_length=32, choices=FailureReason.choices, blank=True)
    # Null only while the entry that started the attempt has not arrived yet (entries may come out of order).
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    node_error = models.JSONField(
        null=True, blank=True, help_text="The node's own error report {code, message, details}, bounded in size."
    )
    seq = models.BigIntegerField(editable=False)

    class Meta:
        # By the column, not the relation: "job" would join Job to apply its ordering.
        ordering = ["job_id", "attempt_id"]
        constraints = [models.UniqueConstraint(fields=["job", "attempt_id"], name="job_attempt_once")]

    def __str__(self) -> str:
        return f"{self.job_id} #{self.attempt_id}"

"""The operator console for jobs: the history mirrored by the audit writer, with its attempts, filters, and
the cancel and retry actions.

Rows are read-only; the actions call `jobs.services` (the live job in Redis) and the audit writer brings the
outcome back here, so a page shows the change a moment after the action.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from core.redis import UNAVAILABLE, run_sync
from core.timefmt import format_duration, format_time, from_epoch_ms
from jobs.models import TERMINAL_STATES, Job, JobAttempt, JobState

NOT_LIVE = "not live: ended longer ago than the retention, or unknown to Redis"
REDIS_DOWN = "Redis unavailable"


def _pretty_json(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))


def _for_each_job(
    fn: Callable[[str, str], Awaitable[dict[str, Any]]], job_ids: Iterable[str], actor: str
) -> dict[str, dict[str, Any] | str]:
    """Run a job service for several jobs inside one event loop: the live job, or why nothing was done."""
    # Imported on use, like the services themselves: these history pages must load even when the live
    # path's module cannot.
    from jobs.services import JobNotFound

    async def run_all() -> dict[str, dict[str, Any] | str]:
        outcomes: dict[str, dict[str, Any] | str] = {}
        for job_id in job_ids:
            try:
                outcomes[job_id] = await fn(job_id, actor)
            except JobNotFound:
                outcomes[job_id] = NOT_LIVE
            except UNAVAILABLE:
                outcomes[job_id] = REDIS_DOWN
        return outcomes

    return run_sync(run_all)


def _report(
    request: HttpRequest, outcomes: dict[str, dict[str, Any] | str], what: str, took: Callable[[str], bool]
) -> None:
    """One message per outcome kind; `took` says from the live state returned whether the action applied."""
    live = {job_id: outcome["state"] for job_id, outcome in outcomes.items() if isinstance(outcome, dict)}
    done = [f"{job_id} (now {state})" for job_id, state in live.items() if took(state)]
    ended = [f"{job_id} ({state})" for job_id, state in live.items() if not took(state)]
    if done:
        messages.success(request, f"{what.capitalize()}: {', '.join(done)}")
    if ended:
        messages.warning(request, f"Not {what} (already ended): {', '.join(ended)}")
    for reason, level in ((NOT_LIVE, messages.WARNING), (REDIS_DOWN, messages.ERROR)):
        ids = [job_id for job_id, outcome in outcomes.items() if outcome == reason]
        if ids:
            messages.add_message(request, level, f"Not {what} ({reason}): {', '.join(ids)}")


class JobAttemptInline(admin.TabularInline):
    model = JobAttempt
    fields = ("attempt_id", "node_id", "state", "reason", "node_error_pretty", "started_at", "ended_at", "duration")
    readonly_fields = fields
    ordering = ("attempt_id",)
    extra = 0
    can_delete = False

    @admin.display(description="duration")
    def duration(self, attempt: JobAttempt) -> str:
        # Readonly callables of an inline show None as "None", not as the empty value: say it ourselves.
        if attempt.started_at is None or attempt.ended_at is None:
            return self.get_empty_value_display()
        return format_duration(attempt.ended_at - attempt.started_at)

    @admin.display(description="node's error")
    def node_error_pretty(self, attempt: JobAttempt) -> str:
        return _pretty_json(attempt.node_error) if attempt.node_error else self.get_empty_value_display()

    def has_add_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    # Where is my job, and how did it end: one state column (with the reason of an unhappy end), where it
    # ran, when and how long. Pool and session are filters and on the job's page.
    list_display = ("job", "state_display", "languages", "node", "attempts", "created", "duration")
    list_filter = ("state", "reason", "pool", "node_id")
    date_hierarchy = "created_at"
    # The history grows to millions of rows: skip the second, unfiltered COUNT(*) on every filtered page.
    show_full_result_count = False
    # Exact matches: operators paste whole ids, and a substring search would scan the whole table.
    search_fields = ("=job_id", "=session_id", "=trace_id")
    actions = ("cancel", "retry")
    inlines = (JobAttemptInline,)
    fieldsets = (
        (None, {"fields": ("answer",)}),
        ("Outcome", {"fields": ("job_id", "state_display", "error_pretty")}),
        (
            "Request",
            {"fields": ("src_lang", "tgt_lang", "pinned_node", "session_id", "utterance_index", "trace_id")},
        ),
        ("Placement", {"fields": ("pool", "node_id", "attempt_count")}),
        ("Time", {"fields": ("created_at", "ended_at", "duration", "timings_pretty")}),
    )
    readonly_fields = ("answer", "state_display", "duration", "error_pretty", "timings_pretty")

    # The rows mirror what the live path recorded: nobody adds, edits or deletes them by hand. Operators act
    # on the live job through the actions, which need the `change_job` permission.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.change_job")

    @admin.display(description="job", ordering="job_id")
    def job(self, job: Job) -> str:
        return job.job_id

    @admin.display(description="node", ordering="node_id")
    def node(self, job: Job) -> str:
        return job.node_id or "-"

    @admin.display(description="attempts", ordering="attempt_count")
    def attempts(self, job: Job) -> int:
        return job.attempt_count

    @admin.display(description="created", ordering="created_at")
    def created(self, job: Job) -> str:
        return format_time(job.created_at)

    @admin.display(description="languages")
    def languages(self, job: Job) -> str:
        return f"{job.src_lang} → {job.tgt_lang}"

    @admin.display(description="state", ordering="state")
    def state_display(self, job: Job) -> str:
        reason = job.reason if job.reason and job.reason != job.state else ""
        return format_html(
            '<span class="status status-{}">{}</span>{}',
            job.state,
            job.state,
            format_html(' <span class="quiet">{}</span>', reason) if reason else "",
        )

    @admin.display(description="duration")
    def duration(self, job: Job) -> str | None:
        return format_duration(job.ended_at - job.created_at) if job.ended_at else None

    @admin.display(description="summary")
    def answer(self, job: Job) -> str:
        """The first line of the page: how the job ended (or where it is), on which node, how long it took."""
        attempts = f"{job.attempt_count} attempt{'s' if job.attempt_count != 1 else ''}"
        where = f"on {job.node_id}" if job.node_id else "on no node"
        if job.ended_at is None:
            line = f"{where}, {attempts} so far, created {format_time(job.created_at)}"
        else:
            line = f"{where} after {attempts}, in {format_duration(job.ended_at - job.created_at)} (ended {format_time(job.ended_at, ms=True)})"
        detail = ""
        if job.error:
            detail = f"{job.error.get('code') or job.reason}: {job.error.get('message') or ''}".rstrip(": ")
        elif job.reason and job.reason != job.state:
            detail = job.reason
        return format_html(
            '<strong class="status status-{}">{}</strong> {}{}',
            job.state,
            job.state,
            line,
            format_html("<br>{}", detail) if detail else "",
        )

    @admin.display(description="error")
    def error_pretty(self, job: Job) -> str:
        if not job.error:
            return "-"
        return f"{job.error.get('code', '')}: {job.error.get('message', '')}"

    @admin.display(description="steps")
    def timings_pretty(self, job: Job) -> str:
        """Each recorded step with its time and its offset from creation, to the millisecond."""
        steps = sorted(
            (name, from_epoch_ms(value)) for name, value in (job.timings or {}).items() if isinstance(value, int | float)
        )
        steps.sort(key=lambda step: step[1])  # type: ignore[arg-type, return-value]
        if not steps:
            return "-"
        return format_html_join(
            mark_safe("<br>"),
            "{}: {} <span class=\"quiet\">(+{})</span>",
            (
                (name.removesuffix("_at"), format_time(at, ms=True), format_duration(at - job.created_at))
                for name, at in steps
            ),
        )

    @admin.action(
        description="Cancel selected jobs (the node is told; its slot is freed)", permissions=["operate"]
    )
    def cancel(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        from jobs import services

        ids = list(queryset.values_list("job_id", flat=True))
        outcomes = _for_each_job(services.cancel_job, ids, request.user.get_username())
        _report(request, outcomes, "cancelled", lambda state: state == JobState.CANCELLED)

    @admin.action(description="Retry selected jobs on another node", permissions=["operate"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        from jobs import services

        ids = list(queryset.values_list("job_id", flat=True))
        outcomes = _for_each_job(services.retry_job, ids, request.user.get_username())
        # A retry of the last allowed attempt ends the job FAILED: reported as not retried.
        _report(request, outcomes, "retried", lambda state: state not in TERMINAL_STATES)

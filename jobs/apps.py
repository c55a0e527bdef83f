from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"

    def ready(self) -> None:
        from core import metrics
        from jobs import services
        from jobs.models import FailureReason, JobState
        from nodes import reactions

        # nodes never imports jobs (apps depend one way); it calls these through nodes.reactions.
        reactions.attach_jobs(
            reactions.JobReactions(
                on_message={
                    "job_ack": services.on_job_ack,
                    "job_started": services.on_job_started,
                    "asr_partial": services.on_asr_partial,
                    "job_result": services.on_job_result,
                },
                node_went_offline=services.node_went_offline,
                node_reconnected=services.node_reconnected,
            )
        )

        # Every job-state series exists at zero from the start, so rate() and the alert rules see it.
        for kind in ("ack", "job"):
            metrics.TIMEOUTS.labels(kind=kind)
        metrics.JOBS_ENDED.labels(state=JobState.DONE, reason="none")
        for reason in FailureReason.values:
            metrics.JOBS_ENDED.labels(state=JobState.FAILED, reason=reason)
            metrics.RETRIES.labels(reason=reason)
        metrics.JOBS_ENDED.labels(state=JobState.CANCELLED, reason=FailureReason.CANCELLED)
        for result in ("created", "duplicate"):
            metrics.JOBS_SUBMITTED.labels(result=result)
        for result in ("claimed", "busy", "taken_over"):
            metrics.JOB_CLAIMS.labels(result=result)

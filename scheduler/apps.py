from django.apps import AppConfig


class SchedulerConfig(AppConfig):
    name = "scheduler"
    verbose_name = "Scheduler"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created
        from prometheus_client import REGISTRY

        from scheduler.file_modes import make_sqlite_private

        connection_created.connect(make_sqlite_private, dispatch_uid="scheduler.make_sqlite_private")

        from scheduler import checks  # noqa: F401  (registers the system checks)
        from scheduler.metrics import LiveStateCollector, initialize_label_sets

        if not getattr(REGISTRY, "_scheduler_live_state", False):
            REGISTRY.register(LiveStateCollector())
            REGISTRY._scheduler_live_state = True  # type: ignore[attr-defined]
        initialize_label_sets()

from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Shared infrastructure: Redis and its Lua scripts, the audit stream, metrics, logging, locks."""

    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from core.file_modes import make_sqlite_private
        from core.metrics import initialize_label_sets

        connection_created.connect(make_sqlite_private, dispatch_uid="core.make_sqlite_private")
        initialize_label_sets()

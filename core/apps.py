from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Shared infrastructure: Redis and its Lua scripts, the audit stream, metrics, logging, locks."""

    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from core.metrics import initialize_label_sets

        initialize_label_sets()

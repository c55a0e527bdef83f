from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Shared infrastructure: Redis and its Lua scripts, the audit stream, metrics, logging, locks."""

    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from prometheus_client import REGISTRY

        from core.metrics import LiveStateCollector, initialize_label_sets

        if not getattr(REGISTRY, "_scheduler_live_state", False):
            REGISTRY.register(LiveStateCollector())
            REGISTRY._scheduler_live_state = True  # type: ignore[attr-defined]
        initialize_label_sets()

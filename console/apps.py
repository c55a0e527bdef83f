from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The operator console beyond the model admin: the live cluster page, `doctor`, and the live-state gauges
    of `/metrics`, all read from one cluster snapshot."""

    name = "console"
    verbose_name = "Console"

    def ready(self) -> None:
        from prometheus_client import REGISTRY

        from console.collector import LiveStateCollector

        if not getattr(REGISTRY, "_scheduler_live_state", False):
            REGISTRY.register(LiveStateCollector())
            REGISTRY._scheduler_live_state = True  # type: ignore[attr-defined]

from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The operator console beyond the model admin: the live cluster page and `doctor`."""

    name = "console"
    verbose_name = "Console"

from django.apps import AppConfig


class SessionsConfig(AppConfig):
    name = "sessions"
    # `sessions` is django.contrib.sessions' label.
    label = "client_sessions"
    verbose_name = "Sessions"

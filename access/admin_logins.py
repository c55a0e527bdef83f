"""Admin login failures and lockouts in the metrics and the log. django-axes counts them and locks addresses
out (settings.AXES_*); these receivers only make that visible. Never the username (people type passwords into
it) nor the password."""

from __future__ import annotations

import logging
from typing import Any

from core import metrics

log = logging.getLogger(__name__)


def _address(request: Any) -> str:
    return str(getattr(request, "META", {}).get("REMOTE_ADDR") or "")


def login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    metrics.AUTH_FAILURES.labels(kind="admin_login").inc()
    log.info("admin login failed", extra={"event": "admin_login_failed", "client": _address(request)})


def locked_out(sender: Any, request: Any = None, **kwargs: Any) -> None:
    metrics.AUTH_THROTTLED.labels(kind="admin_login").inc()
    log.warning("admin login refused: address locked out", extra={"event": "admin_login_locked_out", "client": _address(request)})


def connect() -> None:
    from axes.signals import user_locked_out
    from django.contrib.auth.signals import user_login_failed

    user_login_failed.connect(login_failed, dispatch_uid="access.admin_login_failed")
    user_locked_out.connect(locked_out, dispatch_uid="access.admin_login_locked_out")

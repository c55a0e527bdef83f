"""ASGI entry point: HTTP to Django; `/ws/node` to the node consumer with token auth and no Origin check
(nodes are not browsers and send no Origin); `/ws/session` to the session consumer (API key, its own Origin
list); every other WebSocket is for browsers, behind the
allowed-hosts Origin check and the session auth."""

from __future__ import annotations

import gc
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scheduler.settings")
django_asgi_app = get_asgi_application()

from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402


class BearerAPIHandler(ASGIHandler):
    """Django without its middleware, for API requests that carry their own credential (API key or node
    token). Each sync middleware costs a hop to Django's one sync thread per request, which serialised all
    API traffic of an instance on that thread; bearer requests need neither sessions, CSRF nor messages."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response_async if is_async else self._get_response)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's entry point without its per-request `ThreadSensitiveContext`: that context gives every
        request a sync thread of its own, started at the first thread-sensitive hop (the request_started
        receivers) and joined when the request ends, which profiled at ~15% of the web process under job
        load. A bearer request makes only two short hops (signal receivers, response.close), which share
        the process's one sync thread instead."""
        await self.handle(scope, receive, send)


bearer_api_app = BearerAPIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import re_path  # noqa: E402

from core import access_log  # noqa: E402
from jobs import lean_api  # noqa: E402
from nodes.consumers import NodeConsumer  # noqa: E402
from scheduler.background import ensure_started  # noqa: E402
from scheduler.routing import browser_websocket_urlpatterns  # noqa: E402
from sessions.consumers import SessionConsumer  # noqa: E402

# The admin's CSS and scripts (/static/), served from the installed apps by this process, so `make run` and a
# bare deployment need no collectstatic and no web server in front; behind a proxy that serves
# STATIC_ROOT itself, SERVE_STATIC=false turns this off.
http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.SERVE_STATIC else django_asgi_app

router = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": URLRouter(
            [
                re_path(r"^ws/node/?$", NodeConsumer.as_asgi()),
                # Its own Origin list and API-key check (SESSIONS_ALLOWED_ORIGINS): the lingua web client is
                # served from its own origin, not this one's, and holds no Django session.
                re_path(r"^ws/session/?$", SessionConsumer.as_asgi()),
                re_path(r"", AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(browser_websocket_urlpatterns)))),
            ]
        ),
    }
)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Starts this instance's background loop with the first request of any kind (daphne sends no lifespan
    events; load-balancer probes of /healthz reach every instance early), and answers lifespan for servers
    that send it."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                ensure_started()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                _forget_live_gauges()
                await send({"type": "lifespan.shutdown.complete"})
                return
    ensure_started()
    if scope["type"] == "http" and scope["path"].startswith("/api/") and _has_bearer(scope):
        # The two endpoints every job calls skip Django altogether (jobs/lean_api.py).
        await access_log.logged(lean_api.app if lean_api.handles(scope) else bearer_api_app, scope, receive, send)
        return
    await access_log.logged(router, scope, receive, send)


def _forget_live_gauges() -> None:
    """A stopping process's live gauges (its node sockets) must not count on in the summed /metrics."""
    if directory := settings.PROMETHEUS_MULTIPROC_DIR:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), directory)


def _has_bearer(scope: dict[str, Any]) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            return value[:7].lower() == b"bearer "
    return False


# A web process holds many long-lived objects (Django, one consumer per node socket) and allocates many
# short-lived ones per message; with CPython's default thresholds (700, 10, 10) the collector's full passes
# cost about a quarter of the process's CPU at 5,000 nodes and stall the event loop for up to a second
# (docs/performance.md). What is loaded by now lives as long as the process: keep it out of every
# collection, and collect the young generation less often so short-lived objects die before promotion.
gc.freeze()
gc.set_threshold(50_000, 20, 20)

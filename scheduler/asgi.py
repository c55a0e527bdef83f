"""ASGI entry point: HTTP to Django; `/ws/node` to the node consumer with token auth and no Origin check
(nodes are not browsers and send no Origin); every other WebSocket is for browsers, behind the
allowed-hosts Origin check and the session auth."""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scheduler.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402

from nodes.consumers import NodeConsumer  # noqa: E402
from scheduler.background import ensure_started  # noqa: E402
from scheduler.routing import browser_websocket_urlpatterns  # noqa: E402

router = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(
            [
                re_path(r"^ws/node/?$", NodeConsumer.as_asgi()),
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
                await send({"type": "lifespan.shutdown.complete"})
                return
    ensure_started()
    await router(scope, receive, send)

"""WebSocket routes for browsers (the live console may add some); node sockets are routed in asgi.py."""

from django.urls import URLPattern

browser_websocket_urlpatterns: list[URLPattern] = []

"""The REST API (Django Ninja): routers of the apps mounted under /api/v1/."""

from ninja import NinjaAPI

api = NinjaAPI(title="lingua-scheduler", version="1", urls_namespace="api-v1")

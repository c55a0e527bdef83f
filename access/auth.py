"""Who may call the REST API: an API key as `Authorization: Bearer <key>` holding the endpoint's scope, or a
logged-in staff user in a browser (the interactive docs). Endpoints declare `auth=require(Scope.X)`.

Refusals raise `AuthRefused` (401 or 403), which the API renders in its error format; each is counted in
`API_KEY_REJECTIONS` by a bounded reason. Only the public id of a key is ever logged, never its secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from datetime import timedelta
from typing import Any, NoReturn

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from ninja.errors import HttpError
from ninja.security import HttpBearer
from ninja.utils import check_csrf

from access import throttle
from access.models import ApiKey, Scope
from core import credentials, metrics

log = logging.getLogger(__name__)

# last_used_at is for operators spotting unused keys: minute precision is plenty and spares a write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


REFUSAL_MESSAGES = {
    "malformed": "an API key looks like '<id>.<secret>'",
    "invalid": "unknown API key",
    "revoked": "this API key was revoked",
    "expired": "this API key has expired",
}


class AuthRefused(HttpError):
    """A request auth turned away. `reason` is the metric label (a small fixed set); `key_id` the public part
    of the presented key, when there was one, for the log line."""

    code = "UNAUTHORIZED"

    retry_after_s: int | None = None

    def __init__(
        self, status: int, message: str, reason: str, key_id: str = "", details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(status, message)
        self.reason = reason
        self.key_id = key_id
        self.details = details or {}


class Unauthorized(AuthRefused):
    code = "UNAUTHORIZED"

    def __init__(self, message: str, reason: str, key_id: str = "") -> None:
        super().__init__(401, message, reason, key_id)


class Forbidden(AuthRefused):
    code = "FORBIDDEN"

    def __init__(
        self, message: str, reason: str, key_id: str = "", details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(403, message, reason, key_id, details)


class RateLimited(AuthRefused):
    code = "RATE_LIMITED"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            429,
            "too many wrong API keys from this address; retry later",
            "rate_limited",
            details={"retry_after_s": retry_after_s},
        )
        self.retry_after_s = retry_after_s


def client_address(request: HttpRequest) -> str:
    """The peer's address as the server saw it (after its proxy-header handling, if configured)."""
    return str(request.META.get("REMOTE_ADDR") or "")


def _refuse(exc: AuthRefused) -> NoReturn:
    metrics.API_KEY_REJECTIONS.labels(reason=exc.reason).inc()
    raise exc


class ApiAuth(HttpBearer):
    """One scope, two ways in. A Bearer header is always judged as an API key (a bad one is never excused by
    a session cookie); without one, a session cookie must belong to a staff user and, for unsafe methods,
    come with Django's CSRF token, since a browser sends cookies on its own."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        super().__init__()

    def __call__(self, request: HttpRequest) -> Any:
        header = request.headers.get("Authorization")
        if header:
            return key_for_header(header, self.scope, client_address(request))
        if settings.SESSION_COOKIE_NAME in request.COOKIES:
            if not getattr(request, "_ninja_csrf_exempt", False):
                # Read the body first: the CSRF check parses a form body from the stream, after which Ninja
                # could no longer read it (a 500 instead of an answer).
                request.body  # noqa: B018
                if check_csrf(request) is not None:
                    _refuse(
                        Forbidden("CSRF check failed: send the X-CSRFToken header with a session", "csrf")
                    )
            return self._staff(request)
        _refuse(Unauthorized("send 'Authorization: Bearer <api key>'", "missing"))

    async def authenticate(self, request: HttpRequest, token: str) -> ApiKey:
        return await key_for(token, self.scope, client_address(request))

    async def _staff(self, request: HttpRequest) -> AbstractBaseUser:
        user = await request.auser()
        if not user.is_authenticated:
            _refuse(Unauthorized("log in, or send 'Authorization: Bearer <api key>'", "missing"))
        if not getattr(user, "is_staff", False):
            _refuse(Forbidden("only staff users may use the API with a session", "not_staff"))
        return user


async def key_for_header(header: str, scope: Scope, address: str) -> ApiKey:
    """The API key an `Authorization` header presents, if it holds `scope`; else AuthRefused (counted)."""
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        _refuse(Unauthorized("the Authorization header must be 'Bearer <api key>'", "malformed"))
    return await key_for(credential.strip(), scope, address)


async def key_for(token: str, scope: Scope, address: str) -> ApiKey:
    """The active API key `token` names, if it holds `scope`; else AuthRefused (counted). An address that
    sent too many wrong keys lately is refused (429) before its key is even looked up."""
    key = _recently_verified(token)
    reason = ""
    if key is None and (key := _due_for_refresh(token)) is not None:
        # Verified a little longer ago than the cache allows: answered from it while one lookup, in the
        # background, refreshes it. Every request of a busy key used to wait for the lookup (a thread hop,
        # a query, once a minute a write) at the same moment, every API_KEY_CACHE_S.
        _refresh_soon(token)
    if key is None:
        try:
            await throttle.check("api_key", address)
        except throttle.Throttled as exc:
            _refuse(RateLimited(exc.retry_after_s))
        key, reason = await _looked_up(token)
        if key is not None:
            _remember(token, key)
        elif reason in ("malformed", "invalid"):
            # Revoked and expired keys are known ones, used by a forgetful client, not guesses.
            await throttle.record_failure("api_key", address)
    key_id = _public_id(token)
    if key is None:
        _refuse(Unauthorized(REFUSAL_MESSAGES[reason], reason, key_id))
    if not key.allows(scope):
        _refuse(Forbidden(f"this API key lacks the {scope.value} scope", "scope", key_id, {"required_scope": scope.value}))
    return key


# Keys verified in the last few seconds, by a hash of the presented credential: every request needs its key
# checked, and a database round trip (a thread hop, a connection) per request capped the whole API at the
# speed of one database thread. Revocation reaches every process within API_KEY_CACHE_S and one lookup (an
# entry up to twice that old is answered from while one lookup refreshes it).
_verified: dict[str, tuple[float, ApiKey]] = {}


def _cache_key(presented: str) -> str:
    return hashlib.sha256(presented.encode()).hexdigest()


def _recently_verified(presented: str) -> ApiKey | None:
    entry = _verified.get(_cache_key(presented))
    if entry is None or time.monotonic() - entry[0] > settings.API_KEY_CACHE_S or not entry[1].is_active():
        return None
    return entry[1]


def _due_for_refresh(presented: str) -> ApiKey | None:
    """A key verified between one and two cache lifetimes ago (still active by its own expiry), for
    `key_for` to answer from while it refreshes the entry."""
    entry = _verified.get(_cache_key(presented))
    if entry is None or not entry[1].is_active():
        return None
    age = time.monotonic() - entry[0]
    return entry[1] if settings.API_KEY_CACHE_S < age <= 2 * settings.API_KEY_CACHE_S else None


# Lookups in flight, by credential: concurrent requests of one key share one database check.
_lookups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Future[tuple[ApiKey | None, str]]]] = (
    weakref.WeakKeyDictionary()
)


async def _looked_up(presented: str) -> tuple[ApiKey | None, str]:
    loop = asyncio.get_running_loop()
    pending = _lookups.setdefault(loop, {})
    cache_key = _cache_key(presented)
    lookup = pending.get(cache_key)
    if lookup is None:
        lookup = pending[cache_key] = asyncio.ensure_future(database_sync_to_async(check_key)(presented))
        lookup.add_done_callback(lambda _: pending.pop(cache_key, None))
    return await asyncio.shield(lookup)


def _refresh_soon(presented: str) -> None:
    if _cache_key(presented) in _lookups.get(asyncio.get_running_loop(), {}):
        return

    async def refresh() -> None:
        try:
            key, _ = await _looked_up(presented)
        except Exception:
            # The database did not answer: the entry ages out and the next request looks the key up itself.
            log.warning("API key refresh failed", extra={"event": "api_key_refresh_failed"}, exc_info=True)
            return
        if key is None:
            _verified.pop(_cache_key(presented), None)
        else:
            _remember(presented, key)

    task = asyncio.ensure_future(refresh())
    _background.add(task)
    task.add_done_callback(_background.discard)


_background: set[asyncio.Future[None]] = set()


def _remember(presented: str, key: ApiKey) -> None:
    if len(_verified) > 10_000:
        _verified.clear()
    _verified[_cache_key(presented)] = (time.monotonic(), key)


def forget_verified_keys() -> None:
    _verified.clear()


def require(scope: Scope) -> ApiAuth:
    """The `auth=` of an endpoint that needs `scope`; staff sessions hold every scope."""
    return ApiAuth(scope)


def check_key(presented: str) -> tuple[ApiKey | None, str]:
    """The active key matching `presented` (and its last use recorded), or None with why it was refused."""
    key = ApiKey.authenticate(presented)
    if key is None:
        return None, _refusal_reason(presented)
    now = timezone.now()
    if key.last_used_at is None or key.last_used_at < now - LAST_USED_RESOLUTION:
        # Conditional UPDATE: concurrent requests of one key write at most once per minute between them.
        ApiKey.objects.filter(pk=key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
    return key, ""


def _refusal_reason(presented: str) -> str:
    # Revoked or expired is only said to a caller that proved it holds the secret.
    parts = credentials.split(presented)
    if parts is None:
        return "malformed"
    key = ApiKey.objects.filter(pk=parts[0]).first()
    if key is None or not credentials.matches(parts[1], key.secret_hash):
        return "invalid"
    return "revoked" if key.revoked_at is not None else "expired"


def _public_id(presented: str) -> str:
    return credentials.public_id(presented)


def actor_of(request: HttpRequest) -> str:
    """Who to name in the audit trail for an authenticated request."""
    caller = request.auth  # type: ignore[attr-defined]
    if isinstance(caller, ApiKey):
        return f"apikey:{caller.id}"
    return caller.get_username()

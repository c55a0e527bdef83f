"""The one settings module. Every environment read of the project happens here, through typed helpers."""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
from pathlib import Path

import dj_database_url
from csp.constants import NONCE

from core import runfile
from scheduler.env import envbool, envfloat, envint, envlist, envnets, envstr, raw

BASE_DIR = Path(__file__).resolve().parent.parent

# --- The instance `make run` started from this checkout ------------------------------------------------------

# A command run from another shell, with nothing exported, reaches the running instance: every value below
# that the environment leaves unset (Redis, secret key, database, web address) comes from the run file the
# supervisor wrote. The environment always wins; RUN_FILE=none ignores the file.
RUN_FILE = envstr("RUN_FILE", str(BASE_DIR / "var" / "run.json"))
RUNNING = None if RUN_FILE == "none" else runfile.read(Path(RUN_FILE))


# --- Django core ------------------------------------------------------------------------------------------

DEBUG = envbool("DEBUG", False)
# A missing SECRET_KEY is reported by the system check `scheduler.E001` unless DEBUG is on; the random
# fallback keeps management commands usable on a fresh machine (sessions then do not survive a restart).
_RUN_ENV = {"SECRET_KEY_FILE": RUNNING.secret_key_file} if RUNNING and RUNNING.secret_key_file else {}
SECRET_KEY_CONFIGURED = raw("SECRET_KEY") is not None or raw("SECRET_KEY", _RUN_ENV) is not None
SECRET_KEY = envstr("SECRET_KEY", "") or envstr("SECRET_KEY", "", _RUN_ENV) or secrets.token_urlsafe(50)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    # Swagger UI's assets from the installed package (ninja/static/), not a CDN.
    "ninja",
    "axes",
    "csp",
    "scheduler",
    "core",
    "console",
    "access",
    "nodes",
    "pools",
    "jobs",
    "sessions",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # Refuses logins from a locked-out address before the password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "scheduler.urls"
ASGI_APPLICATION = "scheduler.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- HTTPS deployments (docs/security.md): TLS=true turns on everything `check --deploy` asks for ---------------

TLS = envbool("TLS", False)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", TLS)
# Probes and scrapers inside the network speak plain HTTP to the instance itself.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31_536_000 if TLS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", TLS)
# The preload directive only makes the site eligible for the browsers' list; submitting it is a separate step.
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", TLS)
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", TLS)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", TLS)
# Behind a TLS-terminating proxy: the header it sets, "HTTP_X_FORWARDED_PROTO=https". Only set it when the
# proxy always sets (or strips) that header, or a client could claim HTTPS over plain HTTP.
_proxy_header = envstr("SECURE_PROXY_SSL_HEADER", "")
SECURE_PROXY_SSL_HEADER = tuple(_proxy_header.split("=", 1)) if "=" in _proxy_header else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# Every page the admin and the API docs serve: scripts and styles from this origin only (inline scripts need
# the request's nonce), nothing framed, forms posted here only.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", NONCE],
        # Swagger UI and the admin set style attributes from their scripts.
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- Database: SQLite by default, anything dj-database-url understands through DATABASE_URL -------------

# The run file names a database only when `make run` was given one (empty: this default).
DATABASE_URL = envstr(
    "DATABASE_URL", (RUNNING.database_url if RUNNING else "") or f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}"
)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat write from separate processes: WAL lets readers run beside the one writer and
    # the busy timeout turns lock contention into a short wait instead of "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    # A file (not pytest-django's in-memory default) so server processes started by tests share it; one per
    # test process so parallel runs never delete each other's database.
    DATABASES["default"]["TEST"] = {
        "NAME": envstr("TEST_SQLITE_PATH", str(Path(tempfile.gettempdir()) / f"lingua-test-{os.getpid()}.sqlite3"))
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The SQLite files (and the `make run` secrets beside them) are created readable by their owner only.
PRIVATE_FILE_MODE = 0o600

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
# Dates and times on screens: one form, UTC to the second (scheduler/formats/, docs/time.md).
FORMAT_MODULE_PATH = ["scheduler.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
# The web process serves /static/ itself (scheduler/asgi.py); false when a proxy serves STATIC_ROOT.
SERVE_STATIC = envbool("SERVE_STATIC", True)

# --- Redis, channel layer, Celery ---------------------------------------------------------------------------

# Unset means "no Redis configured": `make run` then starts an embedded redis-server and sets REDIS_URL for
# its children; the settings themselves never assume a server on 6379 (check `scheduler.E002`).
REDIS_URL = envstr("REDIS_URL", RUNNING.redis_url if RUNNING else "")
# Where REDIS_URL came from, for commands that say which Redis they use.
REDIS_URL_SOURCE = "environment" if raw("REDIS_URL") else ("run file" if RUNNING else "unset")
REDIS_KEY_PREFIX = envstr("REDIS_KEY_PREFIX", "sched")
REDIS_SOCKET_TIMEOUT = envfloat("REDIS_SOCKET_TIMEOUT", 2.0, minimum=0.05)
REDIS_MAX_CONNECTIONS = envint("REDIS_MAX_CONNECTIONS", 64, minimum=2)



def channel_layer_hosts(url: str) -> list[dict[str, object]]:
    """channels-redis waits for messages with a 5 s blocking pop; redis-py 8 reads with a 5 s socket timeout by
    default, so every idle wait ended in a TimeoutError (a warning and a reconnect every 5 s per process). The
    read timeout must outlast the pop."""
    return [{"address": url, "socket_timeout": 15, "socket_connect_timeout": 5}]


CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "core.channel_layer.ResilientRedisChannelLayer",
        "CONFIG": {
            "hosts": channel_layer_hosts(REDIS_URL or "redis://127.0.0.1:6379/0"),
            "prefix": f"{REDIS_KEY_PREFIX}:asgi",
            "capacity": 1000,
            "expiry": 30,
        },
    }
}

CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", REDIS_URL or "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers reconnect to a lost broker within a second (scheduler/celery.py), and never give up: 100 retries
# at that pace would end a worker after under two minutes of Redis being away.
CELERY_WORKER_CONSUMER = "scheduler.celery:QuickReconnectConsumer"
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(BASE_DIR / "var" / "celerybeat-schedule")

# --- This instance --------------------------------------------------------------------------------------------

INSTANCE_ID = envstr("INSTANCE_ID", f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}")

# --- Nodes ------------------------------------------------------------------------------------------------------

NODE_AUTH_REQUIRED = envbool("NODE_AUTH_REQUIRED", True)
NODE_ALLOW_CPU_ONLY = envbool("NODE_ALLOW_CPU_ONLY", False)
NODE_CAPABILITY_SCHEMA_VERSION = "2.0"
NODE_DEFAULT_MAX_CONCURRENT_JOBS = envint("NODE_DEFAULT_MAX_CONCURRENT_JOBS", 4, minimum=1)
NODE_HEARTBEAT_INTERVAL_S = envfloat("NODE_HEARTBEAT_INTERVAL_S", 15.0, minimum=0.1)
NODE_HEARTBEAT_TIMEOUT_S = envfloat("NODE_HEARTBEAT_TIMEOUT_S", 45.0, minimum=0.2)
NODE_WARMUP_TIMEOUT_S = envfloat("NODE_WARMUP_TIMEOUT_S", 60.0, minimum=0.2)
NODE_HEALTH_CONSECUTIVE_FAILURES = envint("NODE_HEALTH_CONSECUTIVE_FAILURES", 3, minimum=1)
NODE_HEALTH_WINDOW = envint("NODE_HEALTH_WINDOW", 5, minimum=1)
NODE_HEALTH_WINDOW_FAILURES = envint("NODE_HEALTH_WINDOW_FAILURES", 3, minimum=1)
NODE_RESOURCE_THRESHOLD_PERCENT = envfloat("NODE_RESOURCE_THRESHOLD_PERCENT", 85.0, minimum=1)
NODE_CAPABILITIES_TTL_S = envint("NODE_CAPABILITIES_TTL_S", 3600, minimum=1)
NODE_SWEEP_INTERVAL_S = envfloat("NODE_SWEEP_INTERVAL_S", 5.0, minimum=0.05)
NODE_MAX_MESSAGE_BYTES = envint("NODE_MAX_MESSAGE_BYTES", 4 * 1024 * 1024, minimum=1024)
NODE_BAD_MESSAGE_LIMIT = envint("NODE_BAD_MESSAGE_LIMIT", 20, minimum=1)
NODE_BAD_MESSAGE_WINDOW_S = envfloat("NODE_BAD_MESSAGE_WINDOW_S", 60.0, minimum=0.1)
NODE_HTTP_DISPATCH_TIMEOUT_S = envfloat("NODE_HTTP_DISPATCH_TIMEOUT_S", 5.0, minimum=0.1)
# Hostile-input limits (docs/security.md). A socket that has not registered this long after its handshake
# is closed (4408); so is a registered one that sent nothing for NODE_IDLE_TIMEOUT_S (a live node heartbeats
# every 15 s). 0 turns either off.
NODE_REGISTER_TIMEOUT_S = envfloat("NODE_REGISTER_TIMEOUT_S", 30.0, minimum=0)
NODE_IDLE_TIMEOUT_S = envfloat("NODE_IDLE_TIMEOUT_S", 120.0, minimum=0)
# Open node sockets one token may hold on one instance (0: no cap). A fleet sharing one token needs room.
NODE_MAX_SOCKETS_PER_TOKEN = envint("NODE_MAX_SOCKETS_PER_TOKEN", 1000, minimum=0)
# Heartbeats: a bucket of NODE_HEARTBEAT_BURST, refilled one per NODE_HEARTBEAT_MIN_INTERVAL_S (by default a
# fifteenth of the interval: 1 s). The real node sends one every 15 s, one right after its register is
# acknowledged and one (debounced to 2 s) on a capability change.
NODE_HEARTBEAT_BURST = envint("NODE_HEARTBEAT_BURST", 5, minimum=1)
NODE_HEARTBEAT_MIN_INTERVAL_S = envfloat("NODE_HEARTBEAT_MIN_INTERVAL_S", NODE_HEARTBEAT_INTERVAL_S / 15, minimum=0)
# Deepest nesting of JSON a peer may send (node frames, node-link and REST bodies).
PEER_JSON_MAX_DEPTH = envint("PEER_JSON_MAX_DEPTH", 32, minimum=2)

# --- Pools -----------------------------------------------------------------------------------------------------

POOL_MAX_POOLS = envint("POOL_MAX_POOLS", 50, minimum=1)
POOL_MIN_NODES_PER_POOL = envint("POOL_MIN_NODES_PER_POOL", 1, minimum=1)
# Services a node must have ready to be a pool member; the semantic-repair gate is its language set.
POOL_REQUIRED_SERVICES = envlist("POOL_REQUIRED_SERVICES", ["asr", "nmt", "tts"])
POOL_LEASE_TTL_S = envfloat("POOL_LEASE_TTL_S", 15.0, minimum=0.5)
POOL_LEASE_RENEW_S = envfloat("POOL_LEASE_RENEW_S", 2.0, minimum=0.05)
POOL_LEADER_GIVE_UP_S = envfloat("POOL_LEADER_GIVE_UP_S", 10.0, minimum=0.1)
POOL_REBUILD_INTERVAL_S = envfloat("POOL_REBUILD_INTERVAL_S", 10.0, minimum=0.1)
POOL_HISTORY_LENGTH = envint("POOL_HISTORY_LENGTH", 200, minimum=1)
POOL_LEADER_ENABLED = envbool("POOL_LEADER_ENABLED", True)

# --- Jobs ------------------------------------------------------------------------------------------------------

JOB_ACK_TIMEOUT_S = envfloat("JOB_ACK_TIMEOUT_S", 3.0, minimum=0.05)
JOB_TIMEOUT_S = envfloat("JOB_TIMEOUT_S", 30.0, minimum=0.1)
# Longer than the real node's 15 s heartbeat interval: a node that comes back (restart, reconnect, a
# degraded node recovering) needs up to one heartbeat to be ready again, and a job waiting for it must last.
JOB_PENDING_TIMEOUT_S = envfloat("JOB_PENDING_TIMEOUT_S", 20.0, minimum=0.05)
JOB_MAX_ATTEMPTS = envint("JOB_MAX_ATTEMPTS", 3, minimum=1)
JOB_RETENTION_S = envint("JOB_RETENTION_S", 3600, minimum=1)
JOB_MAX_AUDIO_BYTES = envint("JOB_MAX_AUDIO_BYTES", 2 * 1024 * 1024, minimum=1024)
JOB_SAMPLE_SIZE = envint("JOB_SAMPLE_SIZE", 8, minimum=1)
JOB_MODEL_UNAVAILABLE_S = envfloat("JOB_MODEL_UNAVAILABLE_S", 60.0, minimum=0.1)
JOB_SWEEP_INTERVAL_S = envfloat("JOB_SWEEP_INTERVAL_S", 0.25, minimum=0.01)
# The reconciler (jobs/reconcile.py): how often it compares the mirror's live rows with Redis, and how old a
# row must be before it is judged (younger ones usually have their entries still on the audit stream).
# A node that comes back on a new connection while it held attempts: how long their results may take to come
# over the new socket before they end NODE_OFFLINE and go elsewhere (instead of the whole job timeout).
NODE_RECONNECT_GRACE_S = envfloat("NODE_RECONNECT_GRACE_S", 5.0, minimum=0.0)
JOB_RECONCILE_INTERVAL_S = envfloat("JOB_RECONCILE_INTERVAL_S", 30.0, minimum=0.1)
JOB_RECONCILE_GRACE_S = envfloat("JOB_RECONCILE_GRACE_S", 60.0, minimum=0.0)
# A REST body carries the audio as base64 (4/3 of its size) beside the other fields.
DATA_UPLOAD_MAX_MEMORY_SIZE = JOB_MAX_AUDIO_BYTES * 4 // 3 + 64 * 1024

# --- Sessions (/ws/session, docs/sessions.md) -------------------------------------------------------------------

# Without this, a session needs an API key with the `sessions` scope (`?token=` or `Authorization: Bearer`);
# true lets anyone who can reach the port open sessions (a warning at start says so).
SESSIONS_OPEN_ACCESS = envbool("SESSIONS_OPEN_ACCESS", False)
# Origins a browser may open sessions from (exact `scheme://host[:port]`, or `*`); clients that send no
# Origin (the mobile app, the API gateway) are not browsers and are not subject to it.
SESSIONS_ALLOWED_ORIGINS = envlist("SESSIONS_ALLOWED_ORIGINS", [])
SESSIONS_MAX_PER_KEY = envint("SESSIONS_MAX_PER_KEY", 100, minimum=1)
# The streaming buffer is cut above this size (the old server's 500 KB), and a one-shot `utterance` above it
# is refused.
SESSIONS_MAX_UTTERANCE_BYTES = envint("SESSIONS_MAX_UTTERANCE_BYTES", 500 * 1024, minimum=1024)
# Audio a session may send per second, with a burst of one whole utterance.
SESSIONS_MAX_AUDIO_BYTES_PER_S = envint("SESSIONS_MAX_AUDIO_BYTES_PER_S", 64 * 1024, minimum=1024)
SESSIONS_MAX_MESSAGE_BYTES = envint("SESSIONS_MAX_MESSAGE_BYTES", 2 * 1024 * 1024, minimum=1024)
# Utterance cutting on the streaming path; defaults are the old server's.
SESSIONS_PAUSE_MS = envint("SESSIONS_PAUSE_MS", 3000, minimum=10)
SESSIONS_MAX_DURATION_MS = envint("SESSIONS_MAX_DURATION_MS", 10_000, minimum=100)
SESSIONS_PADDING_FINAL_MS = envint("SESSIONS_PADDING_FINAL_MS", 280, minimum=0)
SESSIONS_PADDING_TIMEOUT_MS = envint("SESSIONS_PADDING_TIMEOUT_MS", 220, minimum=0)
# How long `session_close` waits for the results of utterances still in flight before its ack.
SESSIONS_CLOSE_WAIT_S = envfloat("SESSIONS_CLOSE_WAIT_S", 10.0, minimum=0.0)
# A live session's registry entry expires this long after its instance last refreshed it (every third of it),
# so the sessions of an instance that died free their key's slots by themselves.
SESSIONS_TTL_S = envfloat("SESSIONS_TTL_S", 90.0, minimum=1.0)

# --- Audit ---------------------------------------------------------------------------------------------------------

AUDIT_BATCH_SIZE = envint("AUDIT_BATCH_SIZE", 500, minimum=1)
AUDIT_INTERVAL_S = envfloat("AUDIT_INTERVAL_S", 1.0, minimum=0.05)
# The audit writer's lock, renewed after every batch: a writer killed or frozen holding it stops the mirror
# for this long at most.
AUDIT_LOCK_TTL_S = envfloat("AUDIT_LOCK_TTL_S", 10.0, minimum=1.0)

# --- Web server and the `make run` supervisor ------------------------------------------------------------------------

WEB_HOST = envstr("WEB_HOST", RUNNING.web_host if RUNNING else "127.0.0.1")
WEB_PORT = envint("WEB_PORT", RUNNING.web_port if RUNNING else 8000, minimum=1)
# The address this machine reaches the web server at (a wildcard bind is reached on loopback): the default
# target of `submit_jobs` and `simulate_nodes`.
_LOCAL_HOST = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(WEB_HOST, WEB_HOST)
if ":" in _LOCAL_HOST and not _LOCAL_HOST.startswith("["):
    _LOCAL_HOST = f"[{_LOCAL_HOST}]"
WEB_URL = f"http://{_LOCAL_HOST}:{WEB_PORT}"
RUN_WORKER = envbool("RUN_WORKER", True)

# --- API -----------------------------------------------------------------------------------------------------------

API_PAGE_SIZE = envint("API_PAGE_SIZE", 100, minimum=1)
# How long a process trusts an API key it verified (a revocation takes at most this long to apply).
API_KEY_CACHE_S = envfloat("API_KEY_CACHE_S", 5.0, minimum=0.0)
# Client side: the key `submit_jobs` uses when --api-key is not given (keeps the secret off the process list).
SCHEDULER_API_KEY = envstr("SCHEDULER_API_KEY", "")

# --- Failed authentication (docs/security.md) ---------------------------------------------------------------------

# Wrong API keys and node tokens, counted per client address in Redis across instances: past the limit within
# the window that address is refused (429, or 403 at a node handshake) without a database read. 0: no limit.
AUTH_FAILURE_LIMIT = envint("AUTH_FAILURE_LIMIT", 20, minimum=0)
AUTH_FAILURE_WINDOW_S = envint("AUTH_FAILURE_WINDOW_S", 60, minimum=1)
# Admin logins (django-axes): this many failures from one address locks it out for the cool-off time.
AXES_ENABLED = envbool("ADMIN_LOGIN_LOCKOUT", True)
AXES_FAILURE_LIMIT = envint("ADMIN_LOGIN_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = envfloat("ADMIN_LOGIN_COOLOFF_S", 900.0, minimum=1) / 3600  # hours, as axes takes it
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
# axes logs every attempt with the username; failures are logged by our own handler instead (no passwords).
AXES_VERBOSE = False

# --- Web server (uvicorn) -----------------------------------------------------------------------------------------

# A connection that has not sent a whole request head this long after connecting (or after its last answer)
# is closed: silent and slow-header connections otherwise hold a file descriptor for good.
WEB_HEADER_TIMEOUT_S = envfloat("WEB_HEADER_TIMEOUT_S", 10.0, minimum=0.1)
WEB_KEEPALIVE_TIMEOUT_S = envfloat("WEB_KEEPALIVE_TIMEOUT_S", 5.0, minimum=0.1)

# --- Observability -------------------------------------------------------------------------------------------------

# The live cluster page's history: one point per interval (one instance writes it), kept this long.
STATS_SAMPLE_INTERVAL_S = envfloat("STATS_SAMPLE_INTERVAL_S", 10.0, minimum=0.1)
STATS_HISTORY_S = envfloat("STATS_HISTORY_S", 3600.0, minimum=60.0)
# /metrics: with METRICS_TOKEN set, scrapers must send `Authorization: Bearer <token>`; otherwise only clients
# whose address is inside METRICS_ALLOWED_NETS may read it (loopback and private networks by default).
METRICS_TOKEN = envstr("METRICS_TOKEN", "")
# The live-state gauges of /metrics read every node and pool from Redis: one snapshot serves every scrape of
# every instance for this long (computed by the Celery beat, or by the first instance to need it), so the
# cost per scrape does not grow with the fleet. 0: read Redis on every scrape.
METRICS_SNAPSHOT_MAX_AGE_S = envfloat("METRICS_SNAPSHOT_MAX_AGE_S", 10.0, minimum=0.0)
METRICS_ALLOWED_NETS = envnets(
    "METRICS_ALLOWED_NETS", ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
)
# The folder every process of this host writes its samples to (`make run` sets it): /metrics sums it, and a
# stopping web process marks its live gauges dead there. prometheus_client reads the variable itself when it is
# imported, so it belongs in the environment; this copy is what the project's code goes by. Empty: each process
# serves only its own counters.
PROMETHEUS_MULTIPROC_DIR = envstr("PROMETHEUS_MULTIPROC_DIR", "")

# --- Logging -------------------------------------------------------------------------------------------------------

LOG_LEVEL = envstr("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = envstr("LOG_FORMAT", "json")  # "json" or "console"
# With LOG_FILE set, every line at LOG_LEVEL goes to that file (JSON lines, appended by every process) and the
# terminal gets only LOG_CONSOLE_LEVEL and above: `make run` sets both so its terminal stays readable.
LOG_FILE = envstr("LOG_FILE", "")
# Unset: the terminal gets what the loggers pass (Celery's `-l` raises the root level of its processes).
LOG_CONSOLE_LEVEL = envstr("LOG_CONSOLE_LEVEL", "").upper()
_LOG_HANDLERS: dict[str, dict[str, object]] = {
    "stderr": {
        "class": "logging.StreamHandler",
        "formatter": LOG_FORMAT if LOG_FORMAT in ("json", "console") else "json",
        **({"level": LOG_CONSOLE_LEVEL} if LOG_CONSOLE_LEVEL else {}),
    },
}
if LOG_FILE:
    # Watched: a rotated file (logrotate, or a user deleting it) is reopened instead of written into the void.
    _LOG_HANDLERS["file"] = {"class": "logging.handlers.WatchedFileHandler", "filename": LOG_FILE, "formatter": "json"}
# The one-time admin password of `make run` (ensure_admin writes it here, mode 0600, beside the run file).
ADMIN_PASSWORD_FILE = envstr("ADMIN_PASSWORD_FILE", "")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"beat_ticks": {"()": "core.logs.DropBeatTicks"}},
    "formatters": {
        "json": {"()": "core.logs.JsonFormatter"},
        "console": {"()": "core.logs.ConsoleFormatter"},
    },
    "handlers": _LOG_HANDLERS,
    "root": {"handlers": list(_LOG_HANDLERS), "level": LOG_LEVEL},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        # One line per HTTP request and WebSocket connect (supervisor/serve.py): off unless asked for.
        "scheduler.access": {"level": "INFO" if envbool("ACCESS_LOG", False) else "WARNING"},
        # uvicorn logs WebSocket paths with their query string, which can hold a node token.
        "uvicorn.error": {"level": "WARNING"},
        "uvicorn.access": {"level": "WARNING"},
        # One line per periodic task run (every second for the audit writer) would bury everything else.
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
        # Beat says "Sending due task" for every tick (two lines a second with the default intervals): those
        # lines only at DEBUG; its start and its errors as usual.
        "celery.beat": {"filters": [] if LOG_LEVEL == "DEBUG" else ["beat_ticks"]},
        # django-axes names the username of every failed login; access.admin_logins logs them without it.
        "axes": {"level": "ERROR"},
    },
}

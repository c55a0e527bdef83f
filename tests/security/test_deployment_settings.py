"""HTTPS deployments: `check --deploy` is clean with the production settings docs/security.md lists, and is
not without them; every page carries a Content-Security-Policy; the API docs load Swagger UI from this
server; the SQLite database is readable by its owner only."""

from __future__ import annotations

import os
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent.parent
# As in docs/security.md, "Deploying behind TLS".
PRODUCTION = {
    "DEBUG": "false",
    "ALLOWED_HOSTS": "scheduler.example.com",
    "TLS": "true",
    "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO=https",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "TLS", "SECRET_KEY")}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    key = tmp_path / "secret_key"
    key.write_text(secrets.token_urlsafe(50))
    result = manage("check", "--deploy", "--fail-level", "WARNING", SECRET_KEY_FILE=str(key), **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_without_tls():
    result = manage("check", "--deploy", SECRET_KEY=secrets.token_urlsafe(50), **{**PRODUCTION, "TLS": "false"})
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr + result.stdout, warning


def test_with_tls_plain_http_is_redirected_but_probes_are_not(start_server):
    # uvicorn believes X-Forwarded-Proto only from FORWARDED_ALLOW_IPS (its default: 127.0.0.1); here the
    # proxy is elsewhere, so this client's claim of HTTPS is ignored.
    # Which proxies may claim HTTPS is uvicorn's FORWARDED_ALLOW_IPS; under daphne it is SECURE_PROXY_SSL_HEADER.
    server = start_server(server="uvicorn", TLS="true", FORWARDED_ALLOW_IPS="192.0.2.1")
    with httpx.Client(base_url=server.url) as client:
        admin = client.get("/admin/login/")
        health = client.get("/healthz")
        claimed = client.get("/admin/login/", headers={"X-Forwarded-Proto": "https"})
    assert admin.status_code == 301
    assert admin.headers["location"].startswith("https://")
    assert health.status_code == 200
    assert claimed.status_code == 301


def test_behind_a_trusted_proxy_forwarded_https_is_served_with_hsts_and_secure_cookies(start_server):
    server = start_server(server="uvicorn", TLS="true")  # the proxy is on this machine: 127.0.0.1
    with httpx.Client(base_url=server.url, headers={"X-Forwarded-Proto": "https"}) as client:
        login = client.get("/admin/login/")
    assert login.status_code == 200
    assert login.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert "secure" in login.headers["set-cookie"].lower()


def test_pages_carry_a_csp_and_the_api_docs_load_swagger_ui_from_this_server(start_server):
    server = start_server()
    with httpx.Client(base_url=server.url) as client:
        login = client.get("/admin/login/")
        docs = client.get("/api/v1/docs")
        bundle = client.get("/static/ninja/swagger-ui-bundle.js")
    for page in (login, docs):
        policy = dict(part.strip().split(" ", 1) for part in page.headers["Content-Security-Policy"].split(";"))
        assert policy["default-src"] == "'self'"
        assert policy["script-src"] == "'self'"  # no inline script, no eval, no CDN
        assert policy["frame-ancestors"] == "'none'"
    assert "cdn" not in docs.text.lower()
    assert "<script>" not in docs.text
    assert "/static/ninja/swagger-ui-bundle.js" in docs.text
    assert bundle.status_code == 200


def test_the_live_cluster_pages_inline_script_runs_by_its_nonce(start_server, client, settings, server_env):
    settings.SECRET_KEY = server_env["SECRET_KEY"]
    client.force_login(get_user_model().objects.create_superuser("root", password="pw-for-tests"))
    server = start_server()
    with httpx.Client(base_url=server.url) as browser:
        browser.cookies.update({name: morsel.value for name, morsel in client.cookies.items()})
        page = browser.get("/admin/cluster/")
    assert page.status_code == 200
    nonce = re.search(r"'nonce-([^']+)'", page.headers["Content-Security-Policy"]).group(1)
    assert f'<script nonce="{nonce}">' in page.text


def test_a_new_sqlite_database_is_readable_by_its_owner_only(tmp_path):
    database = tmp_path / "db.sqlite3"
    previous = os.umask(0o022)  # the usual umask, under which files are world-readable
    try:
        result = manage("migrate", "--noinput", DATABASE_URL=f"sqlite:///{database}", SECRET_KEY="x")
    finally:
        os.umask(previous)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(database.stat().st_mode) == 0o600

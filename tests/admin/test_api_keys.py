"""API keys in the admin: shown once at creation with the chosen scopes, stored hashed, revoked by action."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.contrib.admin.utils import quote
from django.test import Client
from django.urls import reverse

from access.models import ApiKey, Scope

pytestmark = pytest.mark.django_db
ADD = reverse("admin:access_apikey_add")
CHANGELIST = reverse("admin:access_apikey_changelist")
PLAINTEXT = re.compile(r"ak_[0-9a-f]{12}\.[A-Za-z0-9_-]{20,}")


def test_creating_an_api_key_shows_the_plaintext_once_and_stores_its_hash_and_scopes(
    admin_client: Client,
) -> None:
    data = {
        "name": "dashboard",
        "scopes": [Scope.NODES_READ, Scope.JOBS_READ],
        "expires_at_0": "",
        "expires_at_1": "",
        "_save": "Save",
    }
    html = admin_client.post(ADD, data, follow=True).content.decode()

    plaintext = PLAINTEXT.search(html)
    assert plaintext, "the plaintext key is not on the page after creation"
    assert "will not be shown again" in html
    key = ApiKey.objects.get()
    secret = plaintext.group(0).split(".")[1]
    assert key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert key.scopes == ["jobs:read", "nodes:read"]
    assert ApiKey.authenticate(plaintext.group(0)) == key
    later = admin_client.get(reverse("admin:access_apikey_change", args=[quote(key.id)])).content.decode()
    assert secret not in later and key.secret_hash not in later


def test_an_api_key_needs_a_known_scope(admin_client: Client) -> None:
    data = {"name": "dashboard", "scopes": ["root"], "expires_at_0": "", "expires_at_1": "", "_save": "Save"}

    response = admin_client.post(ADD, data)

    assert response.status_code == 200  # the form again, with the error
    assert "Select a valid choice" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_revoking_an_api_key_marks_it_revoked_and_it_stops_authenticating(admin_client: Client) -> None:
    key, plaintext = ApiKey.issue("dashboard", [Scope.NODES_READ])

    response = admin_client.post(CHANGELIST, {"action": "revoke", "_selected_action": [key.id]}, follow=True)

    key.refresh_from_db()
    assert "Revoked 1 API key." in response.content.decode()
    assert key.revoked_at is not None
    assert ApiKey.authenticate(plaintext) is None


def test_the_new_key_is_rendered_directly_and_never_travels_in_a_cookie_or_the_session(admin_client: Client) -> None:
    data = {"name": "ci", "scopes": [Scope.JOBS_WRITE], "expires_at_0": "", "expires_at_1": "", "_save": "Save"}

    response = admin_client.post(ADD, data)

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = PLAINTEXT.search(response.content.decode()).group(0).split(".")[1]
    assert all(secret not in morsel.value for morsel in response.cookies.values())
    assert secret not in str(dict(admin_client.session))

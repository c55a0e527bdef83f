"""`manage.py create_api_key`: a key printed once, with the scopes asked for."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from access.models import ApiKey

pytestmark = pytest.mark.django_db


def create(*args: str) -> str:
    out = StringIO()
    call_command("create_api_key", *args, stdout=out)
    return out.getvalue()


def printed_key(output: str) -> str:
    match = re.search(r"key:\s+(ak_\S+)", output)
    assert match, output
    return match.group(1)


def test_it_prints_a_working_key_once_with_a_warning() -> None:
    output = create("--name", "gateway", "--scope", "jobs:write", "--scope", "jobs:read")

    key = ApiKey.authenticate(printed_key(output))
    assert key is not None
    assert key.name == "gateway"
    assert key.scopes == ["jobs:read", "jobs:write"]
    assert key.expires_at is None
    assert "will not be shown again" in output
    assert output.count(printed_key(output).partition(".")[2]) == 2  # the key line and the header line


def test_it_refuses_an_unknown_scope_and_lists_the_known_ones() -> None:
    with pytest.raises(CommandError) as refused:
        create("--name", "x", "--scope", "nodes:read", "--scope", "nodes:admin")

    assert "nodes:admin" in str(refused.value)
    assert "pools:read" in str(refused.value)
    assert not ApiKey.objects.exists()


def test_it_requires_at_least_one_scope() -> None:
    with pytest.raises(CommandError, match="--scope"):
        create("--name", "x")


def test_it_sets_an_expiry_in_days() -> None:
    output = create("--name", "temp", "--scope", "nodes:read", "--expires-days", "2")

    key = ApiKey.objects.get()
    assert key.expires_at is not None
    assert abs(key.expires_at - (timezone.now() + timedelta(days=2))) < timedelta(minutes=1)
    assert ApiKey.authenticate(printed_key(output)) == key


def test_it_refuses_an_expiry_that_is_not_in_the_future() -> None:
    with pytest.raises(CommandError, match="--expires-days"):
        create("--name", "x", "--scope", "nodes:read", "--expires-days", "0")

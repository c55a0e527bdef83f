"""/metrics is for the scraper only: a bearer token when METRICS_TOKEN is set, otherwise an address inside
METRICS_ALLOWED_NETS. Refusals are 403 with the error format, a log line and a counter."""

from __future__ import annotations

import ipaddress
import logging

import pytest
from prometheus_client import REGISTRY

from scheduler.env import EnvError, envnets

pytestmark = pytest.mark.django_db


def refusals(reason: str) -> float:
    return REGISTRY.get_sample_value("scheduler_metrics_refusals_total", {"reason": reason}) or 0.0


def test_loopback_may_scrape_and_a_public_address_is_refused_with_a_reason(client, caplog):
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    before = refusals("address_not_allowed")
    with caplog.at_level(logging.WARNING, logger="scheduler.views"):
        response = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"
    assert response.json()["error"]["details"] == {"reason": "address_not_allowed"}
    assert refusals("address_not_allowed") == before + 1
    assert [r.reason for r in caplog.records if r.getMessage() == "metrics scrape refused"] == ["address_not_allowed"]


def test_the_allowed_networks_are_configurable(client, settings):
    settings.METRICS_ALLOWED_NETS = envnets("X", [], {"X": "203.0.113.0/24"})
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


def test_with_a_token_only_the_token_opens_it_whatever_the_address(client, settings, caplog):
    settings.METRICS_TOKEN = "scrape-secret-1234"
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    with caplog.at_level(logging.DEBUG):
        wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret-9999")
    assert wrong.status_code == 403 and wrong.json()["error"]["details"] == {"reason": "bad_token"}
    assert "scrape-secret" not in caplog.text
    ok = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer scrape-secret-1234")
    assert ok.status_code == 200 and b"scheduler_nodes" in ok.content


def test_a_malformed_network_is_refused_at_start_naming_the_variable():
    assert envnets("NETS", [], {"NETS": "10.0.0.0/8, ::1"}) == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    with pytest.raises(EnvError, match="METRICS_ALLOWED_NETS holds 'ten-dot-zero'"):
        envnets("METRICS_ALLOWED_NETS", [], {"METRICS_ALLOWED_NETS": "ten-dot-zero"})

"""The alert rules and the dashboard can only fire and draw on metrics that exist: every metric name they use
is served by a live /metrics (the old system's rules named metrics that no longer existed). promtool checks
the rules' syntax and unit-tests that each alert fires on the series meant to fire it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from tests.observability.promql import metric_names
from tests.support.metrics import scrape_url
from tests.support.tools import require_tool

OPS = Path(__file__).resolve().parents[2] / "ops"
RULES = OPS / "prometheus" / "alerts.yml"
RULE_TESTS = OPS / "prometheus" / "alerts_test.yml"
DASHBOARD = OPS / "grafana" / "lingua-scheduler.json"


def rule_expressions() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {f"{p['title']} [{t['refId']}]": t["expr"] for p in panels for t in p["targets"]}


def served_names(url: str) -> set[str]:
    return {name for name, _ in scrape_url(url)}


def test_metric_names_are_extracted_from_promql_without_functions_labels_or_keywords():
    expr = (
        'max by (pool) (scheduler_pool_nodes{state="ready", pool=~"a|b"}) == 0 and on (pool) '
        "sum by (pool) (increase(scheduler_pool_demand_total[5m])) > 1e-9 unless absent(up_thing:rate5m)"
    )
    assert metric_names(expr) == {"scheduler_pool_nodes", "scheduler_pool_demand_total", "up_thing:rate5m"}


def test_the_rules_cover_what_operators_must_be_woken_for():
    alerts = rule_expressions()
    assert {
        "NodeFleetShrinking", "PoolWithoutReadyNode", "ReservationFailuresHigh", "AckTimeoutsHigh",
        "JobTimeoutsHigh", "RedisErrors", "PoolLeaderMissing", "PoolLeaderFlapping", "AuditWriterLagging",
    } <= set(alerts)  # fmt: skip
    assert all(metric_names(expr) for expr in alerts.values())


@pytest.mark.django_db(transaction=True)
def test_every_metric_of_the_rules_and_the_dashboard_is_served_by_a_live_metrics(start_server, jobs_key):
    server = start_server()
    # One job with no node to run it: a placement attempt counts demand for the pools it could use.
    response = httpx.post(
        f"{server.url}/api/v1/jobs", headers={"Authorization": f"Bearer {jobs_key}"},
        json={"src_lang": "en", "tgt_lang": "zh", "audio": "AAAA", "session_id": "s", "utterance_index": 0},
        timeout=10,
    )  # fmt: skip
    assert response.status_code in (200, 201, 202), response.text
    served = served_names(server.url)

    used = {f"rule {name}": metric_names(expr) for name, expr in rule_expressions().items()}
    used |= {f"panel {name}": metric_names(expr) for name, expr in dashboard_expressions().items()}
    missing = {where: sorted(names - served) for where, names in used.items() if names - served}
    assert not missing, missing
    # The check can fail: a name that is not served is reported.
    assert "scheduler_not_a_metric_total" not in served


def test_promtool_accepts_the_rules_and_every_alert_fires_on_its_unit_test_series():
    promtool = require_tool("promtool", "PROMTOOL")
    check = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{len(rule_expressions())} rules found" in check.stdout
    unit = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=60
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr
    assert "SUCCESS" in unit.stdout

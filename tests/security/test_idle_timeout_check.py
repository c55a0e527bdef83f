"""An idle timeout shorter than two heartbeat intervals would close live nodes: the start-up check refuses it."""

from __future__ import annotations

from scheduler.checks import check_node_idle_timeout


def test_an_idle_timeout_within_two_heartbeats_fails_the_system_check(settings):
    settings.NODE_HEARTBEAT_INTERVAL_S = 15.0
    settings.NODE_IDLE_TIMEOUT_S = 20.0
    assert [error.id for error in check_node_idle_timeout(None)] == ["scheduler.E007"]
    settings.NODE_IDLE_TIMEOUT_S = 120.0
    assert check_node_idle_timeout(None) == []
    settings.NODE_IDLE_TIMEOUT_S = 0.0
    assert check_node_idle_timeout(None) == []

"""Every Lua script's keys hash to one Redis Cluster slot, and every script loads on a real Redis."""

from __future__ import annotations

import binascii
import re

from redis.crc import key_slot as redis_key_slot

from core import scripts
from core.redis import keys


def key_slot(key: str) -> int:
    """Redis Cluster's HASH_SLOT: CRC16 (XMODEM) of the hash tag, or of the whole key, mod 16384."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return binascii.crc_hqx(key.encode(), 0) % 16384


# The keys each script is called with, exactly as the services build them.
SCRIPT_KEYS = {
    "node_register": lambda k: k.node_keys("node-1A2B3C4D"),
    "node_heartbeat": lambda k: k.node_keys("node-1A2B3C4D"),
    "node_offline": lambda k: [k.node_meta("node-1A2B3C4D"), k.node_cap("node-1A2B3C4D")],
    "node_sweep": lambda k: [k.node_meta("node-1A2B3C4D"), k.node_cap("node-1A2B3C4D")],
    "node_drain": lambda k: [k.node_meta("node-1A2B3C4D")],
    "node_stalled": lambda k: [k.node_meta("node-1A2B3C4D")],
    "deadline_settle": lambda k: [k.node_deadlines],
    "lock_release": lambda k: [k.lock("anything")],
    "lock_renew": lambda k: [k.lock("anything")],
    "auth_failure": lambda k: [k.auth_failures("api_key", "2001:db8::1")],
    "pool_lease": lambda k: [k.pool_lease, k.pool_epoch, k.pool_leader_changes],
    "pool_config_write": lambda k: [k.pool_config, k.pool_epoch, k.pool_history],
    "pool_ensure": lambda k: [k.pool_config, k.pool_epoch, k.pool_history],
    "node_reserve": lambda k: [
        *k.node_keys("node-1A2B3C4D"),
        k.node_reservations("node-1A2B3C4D"),
        k.node_running("node-1A2B3C4D"),
        k.node_unavailable("node-1A2B3C4D"),
    ],
    "node_slot": lambda k: [k.node_reservations("node-1A2B3C4D"), k.node_running("node-1A2B3C4D")],
    "job_create": lambda k: [*k.job_slot_keys("job-1"), k.job_audio("job-1")],
    "job_dispatch": lambda k: k.job_slot_keys("job-1"),
    "job_step": lambda k: k.job_slot_keys("job-1"),
    "job_claim": lambda k: [k.job("job-1")],
    "job_deadline_shorten": lambda k: [k.job("job-1")],
    "job_fail_attempt": lambda k: k.job_slot_keys("job-1"),
    "session_slot": lambda k: [k.key_sessions("ak_0123456789ab")],
}


def test_the_slot_function_matches_redis_documented_values_and_redis_py():
    # Values from the CLUSTER KEYSLOT documentation.
    assert key_slot("somekey") == 11058
    assert key_slot("foo{hash_tag}") == 2515
    for key in ["sched:node:{node-1A2B3C4D}:meta", "plain-key", "a{}b", "{user1000}.following"]:
        assert key_slot(key) == redis_key_slot(key.encode())


def test_every_script_is_listed_with_its_keys():
    assert sorted(SCRIPT_KEYS) == scripts.names()


def test_each_scripts_keys_share_one_slot():
    k = keys()
    for name, build in SCRIPT_KEYS.items():
        slots = {key_slot(key) for key in build(k)}
        assert len(slots) == 1, f"{name} spans slots {slots}"


def first_arguments(source: str) -> list[tuple[str, str]]:
    return re.findall(r"redis\.call\(\s*'([A-Z]+)'\s*(?:,\s*([^,)]+))?", source)


def test_no_script_builds_key_names_inside_lua():
    # Keys made up inside a script are invisible to cluster routing: every key must come through KEYS.
    assert first_arguments("redis.call('HGET', 'sched:x', 'f')") == [("HGET", "'sched:x'")]
    for name in scripts.names():
        for command, first in first_arguments(scripts.source(name)):
            if command == "PUBLISH":
                # A channel, not a key: Redis Cluster broadcasts it, whatever the slot of the script's keys.
                assert first.startswith("ARGV["), f"{name}: {command} {first}"
            elif command != "TIME":
                assert first.startswith("KEYS["), f"{name}: {command} {first}"

"""The embedded Redis of `make run` keeps an append-only file: what was written before Redis was killed is
there after it restarts, and after a new Redis starts on the same folder; without a folder nothing persists."""

from __future__ import annotations

from supervisor.embedded_redis import RedisProcess


def test_data_written_before_a_kill_is_back_after_the_restart_and_in_a_new_server_on_the_same_folder(tmp_path):
    with RedisProcess(data_dir=tmp_path / "redis") as redis:
        redis.command("SET", "sched:job:{job-1}", "accepted")
        redis.kill()
        redis.restart()
        assert redis.command("EXISTS", "sched:job:{job-1}") == b":1"
    assert list((tmp_path / "redis").rglob("*.aof"))

    with RedisProcess(data_dir=tmp_path / "redis") as again:
        assert again.command("EXISTS", "sched:job:{job-1}") == b":1"


def test_without_a_data_folder_a_restarted_server_is_empty():
    with RedisProcess() as redis:
        redis.command("SET", "key", "value")
        redis.kill()
        redis.restart()
        assert redis.command("EXISTS", "key") == b":0"

"""The core's scenarios on a 3-node Redis Cluster started on loopback.

The scenario functions are imported from the core's tests; this module's
fixtures replace the Redis ones, so each scenario runs unchanged on Cluster.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster

from tests.core.test_long_conversations import test_context_overflow_rolls_over_once_and_reprimes  # noqa: F401
from tests.core.test_message_path import (  # noqa: F401  (collected here to run on Cluster)
    test_chat_backend_end_to_end,
    test_deleted_conversation_recovers_silently_with_kept_turns,
    test_duplicate_delivery_is_answered_once,
    test_fifty_concurrent_first_messages_make_one_thread_in_order,
    test_forget_deletes_items_then_conversation_and_local_data,
    test_forget_user_erases_only_that_user,
    test_mapping_turns_and_index_share_one_ttl,
    test_two_cores_on_one_redis_share_one_thread,
)
from tests.support.fixtures import MakeRuntime


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    import random
    import socket

    while True:
        port = random.randrange(20000, 45000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        pytest.skip("redis-server and redis-cli are needed for the Cluster test")
    ports = [_cluster_port() for _ in range(3)]
    workdir = tempfile.mkdtemp(prefix="tk-cluster-")
    procs = [
        subprocess.Popen(
            [server, "--port", str(p), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", f"nodes-{p}.conf", "--save", "", "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for p in ports
    ]
    try:
        for p in ports:
            for _ in range(100):
                if subprocess.run([cli, "-p", str(p), "ping"], capture_output=True).stdout.strip() == b"PONG":
                    break
                time.sleep(0.05)
        nodes = [f"127.0.0.1:{p}" for p in ports]
        subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for _ in range(200):
            info = subprocess.run([cli, "-p", str(ports[0]), "cluster", "info"], capture_output=True).stdout
            if b"cluster_state:ok" in info:
                break
            time.sleep(0.05)
        yield f"redis+cluster://127.0.0.1:{ports[0]}"
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(5)


@pytest.fixture
def prefix(cluster_url: str) -> Iterator[str]:
    name = f"tkc{uuid.uuid4().hex[:10]}"
    yield name
    client = RedisCluster.from_url(cluster_url.replace("redis+cluster://", "redis://"))
    for key in list(client.scan_iter(match=f"{name}:*", count=1000)):
        client.delete(key)
    client.close()


@pytest.fixture(scope="module")
def redis_url(cluster_url: str) -> str:
    """Every runtime the shared ``make_runtime`` builds in this module talks to the Cluster."""
    return cluster_url


async def test_runtimes_here_talk_to_the_cluster(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime()
    assert rt.settings.redis_cluster and type(rt.redis).__name__ == "RedisCluster"


def test_cluster_keys_of_one_thread_share_a_slot(cluster_url: str) -> None:
    from bot.domain import ThreadKey
    from bot.store.keys import Keys

    client = RedisCluster.from_url(cluster_url.replace("redis+cluster://", "redis://"))
    keys, key = Keys("tk"), ThreadKey("slack", "T1", "C1", "U1")
    slots = {client.keyslot(k) for k in (keys.thread(key), keys.turns(key), keys.lock(key), keys.seen(key, "m"))}
    client.close()
    assert len(slots) == 1

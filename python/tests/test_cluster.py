"""The binding's own API on a real 3-master Redis Cluster: every limiter keeps its limits with
its keys in one slot (hash-tagged), on names spread over all three masters, from threads and
from asyncio; and a client not in cluster mode is told so."""

from __future__ import annotations

import asyncio
import uuid
from typing import Dict, List

import pytest
import redis
from redis.cluster import RedisCluster

import regulator
import regulator.asyncio as ra
from conftest import allowed_in_threads
from seeds.servers import cluster_url


@pytest.fixture(scope="module")
def cluster() -> str:
    return cluster_url()


def _inspector(url: str) -> RedisCluster:
    return RedisCluster.from_url(url)


def names_on_every_master(url: str, stem: str) -> List[str]:
    """One fresh name per master, so that every node serves one of them."""
    rc = _inspector(url)
    by_node: Dict[str, str] = {}
    run = uuid.uuid4().hex[:8]
    for i in range(1000):
        name = f"{stem}-{run}-{i}"
        node = rc.get_node_from_key(f"throttle:{{{name}}}").name
        by_node.setdefault(node, name)
        if len(by_node) == 3:
            return sorted(by_node.values())
    pytest.fail(f"names never reached three masters: {by_node}", pytrace=False)


def test_every_limiter_keeps_its_limits_on_every_master(cluster):
    rc = _inspector(cluster)
    client = regulator.Client(cluster, cluster=True)
    for name in names_on_every_master(cluster, "all"):
        # Ten tokens a 50 s window: no refill while the test runs.
        bucket = client.token_bucket(name, rps=0.2, burst=1, window=50)
        assert sum(bucket.consume().allowed for _ in range(12)) == 10, name

        leaky = client.leaky_bucket(name, rate=1, capacity=3)
        assert [bool(leaky.consume()) for _ in range(4)] == [True, True, True, False], name

        smooth = client.continuous_bucket(name, tokens_per_period=10, period=100)
        assert sum(smooth.allow().allowed for _ in range(12)) == 10, name

        sem = client.semaphore(name, capacity=2, hold=10)
        a, b = sem.acquire(), sem.acquire()
        assert sem.try_acquire() is None, name
        a.release()
        with sem.acquire() as c:
            assert c.held
        b.release()

        sched = client.scheduled_bucket(name, capacity=2, refill_every=0.1, refill_amount=1)
        waits = [sched.reserve(1, max_wait=1.0).wait for _ in range(3)]
        assert waits[0] == waits[1] == 0 and waits[2] > 0, (name, waits)

        # Every key the limiters made is hash-tagged, so that a limiter's keys share a slot.
        keys = [k.decode() for k in rc.scan_iter(match=f"throttle:*{name}*", target_nodes=RedisCluster.ALL_NODES)]
        assert f"throttle:{{{name}}}" in keys, keys
        assert len(keys) >= 4, keys
        assert all(k.startswith(f"throttle:{{{name}}}") for k in keys), keys
        assert rc.zcard(f"throttle:{{{name}}}:holders") == 0


def test_knobs_stored_in_the_cluster_override_the_callers_defaults(cluster):
    rc = _inspector(cluster)
    client = regulator.Client(cluster, cluster=True)
    for name in names_on_every_master(cluster, "knobs"):
        rc.hset(f"throttle:{{{name}}}:knobs", mapping={"rps": 0.1, "burst": 1, "window": 30})
        bucket = client.token_bucket(name, rps=1000)
        assert [bucket.consume().allowed for _ in range(5)] == [True, True, True, False, False], name
        assert bucket.consume().source == "knobs"


def test_threads_sharing_a_bucket_on_a_cluster_get_exactly_its_capacity(cluster):
    (name, *_) = names_on_every_master(cluster, "threads")
    bucket = regulator.Client(cluster, cluster=True).token_bucket(name, rps=100, burst=1, window=60)
    assert allowed_in_threads(bucket, threads=8, each=1000) == 100 * 60


@pytest.mark.asyncio
async def test_asyncio_tasks_on_a_cluster_share_buckets_exactly(cluster):
    client = await ra.Client.connect(cluster, cluster=True)
    names = names_on_every_master(cluster, "tasks")
    buckets = [client.token_bucket(n, rps=10, burst=1, window=60) for n in names]
    results = await asyncio.gather(*(b.consume() for b in buckets for _ in range(1000)))
    per_bucket = [sum(d.allowed for d in results[i * 1000 : (i + 1) * 1000]) for i in range(len(buckets))]
    assert per_bucket == [600] * len(names)
    sem = client.semaphore(names[0], capacity=1, hold=10)
    async with await sem.acquire():
        assert await sem.try_acquire() is None


def test_a_leased_bucket_on_a_cluster_spends_only_what_it_took(cluster):
    rc = _inspector(cluster)
    (name, *_) = names_on_every_master(cluster, "leased")
    client = regulator.Client(cluster, cluster=True)
    # One window of a minute: no refill while the test runs.
    leased = client.token_bucket(name, rps=1000, burst=1, window=60).leased(horizon=0.5)
    allowed = sum(leased.consume().allowed for _ in range(700))
    assert allowed == 700
    assert leased.stats.calls * 20 < leased.stats.decisions, leased.stats
    leased.release()
    assert float(rc.hget(f"throttle:{{{name}}}", "tokens")) == pytest.approx(60_000 - 700)


def test_a_client_not_in_cluster_mode_is_told_to_connect_in_cluster_mode(cluster):
    rc = _inspector(cluster)
    first = f"127.0.0.1:{redis.Redis.from_url(cluster).connection_pool.connection_kwargs['port']}"
    # A name whose plain (untagged) key another master serves than the one connected to.
    elsewhere = next(
        n for n in names_on_every_master(cluster, "moved") if rc.get_node_from_key(f"throttle:{n}").name != first
    )
    bucket = regulator.Client(cluster).token_bucket(elsewhere, rps=5)
    with pytest.raises(regulator.NotClusterMode) as e:
        bucket.consume()
    assert "cluster mode" in str(e.value)

# limiters' own tests (github.com/otovo/redis-rate-limiters, tests/test_redis_cluster.py at commit
# a46793a0e72c5dbcb05787558f4275766cb1b011, BSD 4-Clause License, Copyright (c) 2021, Otovo), run against
# regulator.compat.limiters. The only changes: the imports name the adapter (and this
# directory) instead of limiters (and theirs), and the servers are the tests' own.
import asyncio

import pytest
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.client import Redis as SyncRedis
from redis.cluster import RedisCluster as SyncRedisCluster

from seeds.servers import cluster_url, standalone_url

STANDALONE_PORT = int(standalone_url().rsplit(':', 1)[1].split('/')[0])
CLUSTER_PORT = int(cluster_url().rsplit(':', 1)[1])

from regulator.compat.limiters import AsyncSemaphore, AsyncTokenBucket, SyncSemaphore, SyncTokenBucket


@pytest.mark.parametrize(
    'klass,port,limiters',
    [
        (SyncRedis, STANDALONE_PORT, [SyncSemaphore, SyncTokenBucket]),
        (SyncRedisCluster, CLUSTER_PORT, [SyncSemaphore, SyncTokenBucket]),
        (AsyncRedis, STANDALONE_PORT, [AsyncSemaphore, AsyncTokenBucket]),
        (AsyncRedisCluster, CLUSTER_PORT, [AsyncSemaphore, AsyncTokenBucket]),
    ],
)
def test_redis_cluster(klass, port, limiters):
    connection = klass.from_url(f'redis://127.0.0.1:{port}')
    if hasattr(connection, '__aenter__'):
        # Async connection
        asyncio.get_event_loop().run_until_complete(connection.get('INFO'))
    else:
        # Sync connection
        connection.get('INFO')

    for limiter in limiters:
        limiter(
            name='test',
            capacity=99,
            max_sleep=99,
            expiry=99,
            refill_frequency=99,
            refill_amount=99,
            connection=connection,
        )

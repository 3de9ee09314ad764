"""The fixture aiosteady's tests expect, on a real redis-server: `aioredis`, a client that the
adapter connects through and whose `delete`, `exists` and `pttl` look at the bucket the adapter
keeps for a key (regulator's leaky bucket, `throttle:<key>:leaky`) where aiosteady kept it
under the key itself. Their tests are coroutines without marks: pytest-asyncio's auto mode
(pyproject.toml) runs them."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio


class RedisView:
    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._client = client
        self.connection_pool = client.connection_pool

    @staticmethod
    def _key(key: str) -> str:
        return f"throttle:{key}:leaky"

    async def delete(self, key: str) -> int:
        return int(await self._client.delete(self._key(key)))

    async def exists(self, key: str) -> int:
        return int(await self._client.exists(self._key(key)))

    async def pttl(self, key: str) -> int:
        return int(await self._client.pttl(self._key(key)))


@pytest_asyncio.fixture
async def aioredis(server: Any) -> AsyncIterator[RedisView]:
    client = redis.asyncio.Redis(port=server.port)
    yield RedisView(client)
    await client.aclose()


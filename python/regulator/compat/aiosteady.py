"""aiosteady's API on regulator's client: ``from regulator.compat.aiosteady import Throttler``.

``Throttler(redis, max_capacity, drop_recharge, block_duration=None)`` with ``consume(key,
amount=1)`` and ``peek(key)`` coroutines returning ``ThrottleResult(success, level,
until_next_drop, blocked_for)``, as aiosteady 22.1 has them. ``redis`` is the asyncio redis-py
client aiosteady would be given; the adapter connects regulator's client to the same server.
The bucket of ``key`` is regulator's leaky bucket ``throttle:<key>:leaky``, so the daemon's
knobs for ``key`` apply to it. Two of aiosteady's bugs are not copied: an overflowing consume
reports the real level, and a fractional TTL never fails.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from .. import asyncio as ra
from ._redis import connection_of


@dataclass(frozen=True)
class ThrottleResult:
    success: bool  # Whether the bucket had sufficient capacity.
    level: float  # The level of the bucket.
    until_next_drop: float  # In seconds.
    blocked_for: Optional[float]  # In seconds.


_clients: Dict[Tuple[asyncio.AbstractEventLoop, str, Optional[str]], "ra.Client"] = {}


async def _client(redis: Any) -> "ra.Client":
    url, username, password = connection_of(redis)
    key = (asyncio.get_running_loop(), url, username)
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = await ra.Client.connect(url, username=username, password=password)
    return client


@dataclass(frozen=True)
class Throttler:
    redis: Any
    max_capacity: int
    drop_recharge: float
    block_duration: Optional[float] = None

    async def _bucket(self, key: str) -> ra.LeakyBucket:
        client = await _client(self.redis)
        return client.leaky_bucket(key, 1.0 / self.drop_recharge, float(self.max_capacity), block=self.block_duration)

    async def consume(self, key: str, amount: int = 1) -> ThrottleResult:
        """Adds ``amount`` drops if they fit; a negative amount drains, down to 0."""
        d = await (await self._bucket(key)).consume(float(amount))
        return _result(d.allowed, d.level, d.until_next_drop, d.blocked_for)

    async def peek(self, key: str) -> ThrottleResult:
        """The bucket as it is, changing nothing."""
        d = await (await self._bucket(key)).peek()
        return _result(d.allowed, d.level, d.until_next_drop, d.blocked_for)


def _result(success: bool, level: float, until_next_drop: float, blocked_for: float) -> ThrottleResult:
    whole = round(level)
    return ThrottleResult(
        success,
        whole if abs(level - whole) < 1e-9 else level,
        until_next_drop,
        blocked_for if blocked_for > 0 else None,
    )


__all__ = ["ThrottleResult", "Throttler"]

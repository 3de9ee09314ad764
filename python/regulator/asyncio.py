"""The asyncio client: the same limiters as :mod:`regulator`, every call a coroutine.

    import regulator.asyncio
    client = await regulator.asyncio.Client.connect("redis://127.0.0.1:6379/0")
    orders = client.token_bucket("orders-db", rps=100)
    if await orders.consume():
        ...

Calls run on one shared Tokio runtime in background threads, never blocking the event loop.
A leased bucket decides from the lease in hand without leaving the event loop's thread.
"""

from __future__ import annotations

from typing import Optional

from ._native import (
    AsyncClient,
    AsyncContinuousBucket as ContinuousBucket,
    AsyncLeakyBucket as LeakyBucket,
    AsyncPermit as Permit,
    AsyncScheduledBucket as ScheduledBucket,
    AsyncSemaphore as Semaphore,
    AsyncTokenBucket,
    AsyncLeasedBucket,
    Decision,
    LeaseStats,
)


class LeasedBucket:
    """A token bucket deciding from local leases; see ``TokenBucket.leased``."""

    __slots__ = ("_native",)

    def __init__(self, native: AsyncLeasedBucket) -> None:
        self._native = native

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def stats(self) -> LeaseStats:
        return self._native.stats

    async def consume(self, tokens: float = 1.0) -> Decision:
        """Takes ``tokens`` from the lease in hand, or renews it with one call."""
        decided = self._native.decide_locally(tokens)
        if decided is not None:
            return decided
        return await self._native.consume(tokens)

    async def consume_or(self, tokens: float = 1.0, mode: str = "closed") -> Decision:
        decided = self._native.decide_locally(tokens)
        if decided is not None:
            return decided
        return await self._native.consume_or(tokens, mode)

    async def wait(self, tokens: float = 1.0, *, max_wait: float) -> Decision:
        decided = self._native.decide_locally(tokens)
        if decided is not None and decided.allowed:
            return decided
        return await self._native.wait(tokens, max_wait=max_wait)

    async def release(self) -> None:
        await self._native.release()


class TokenBucket:
    """A token bucket in Redis, shared with every worker that uses the same name."""

    __slots__ = ("_native",)

    def __init__(self, native: AsyncTokenBucket) -> None:
        self._native = native

    @property
    def name(self) -> str:
        return self._native.name

    async def consume(self, tokens: float = 1.0) -> Decision:
        return await self._native.consume(tokens)

    async def consume_or(self, tokens: float = 1.0, mode: str = "closed") -> Decision:
        return await self._native.consume_or(tokens, mode)

    async def wait(self, tokens: float = 1.0, *, max_wait: float) -> Decision:
        return await self._native.wait(tokens, max_wait=max_wait)

    def leased(self, *, horizon: float = 0.05, max_share: float = 0.01) -> LeasedBucket:
        return LeasedBucket(self._native.leased(horizon=horizon, max_share=max_share))


class Client:
    """An async connection to Redis. Make one with ``await Client.connect(url)``."""

    __slots__ = ("_native",)

    def __init__(self, native: AsyncClient) -> None:
        self._native = native

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        username: Optional[str] = None,
        password: Optional[str] = None,
        cluster: bool = False,
        call_timeout: Optional[float] = None,
        connect_timeout: Optional[float] = None,
        coalesce: Optional[bool] = None,
    ) -> "Client":
        native = await AsyncClient.connect(
            url,
            username=username,
            password=password,
            cluster=cluster,
            call_timeout=call_timeout,
            connect_timeout=connect_timeout,
            coalesce=coalesce,
        )
        return cls(native)

    def token_bucket(
        self,
        name: str,
        rps: float,
        burst: float = 1.0,
        window: float = 1.0,
        *,
        knobs_ttl: Optional[float] = None,
    ) -> TokenBucket:
        return TokenBucket(self._native.token_bucket(name, rps, burst, window, knobs_ttl=knobs_ttl))

    def leaky_bucket(
        self, name: str, rate: float, capacity: float, *, block: Optional[float] = None
    ) -> LeakyBucket:
        return self._native.leaky_bucket(name, rate, capacity, block=block)

    def continuous_bucket(
        self, name: str, tokens_per_period: float, period: float
    ) -> ContinuousBucket:
        return self._native.continuous_bucket(name, tokens_per_period, period)

    def semaphore(self, name: str, capacity: int, hold: float) -> Semaphore:
        return self._native.semaphore(name, capacity, hold)

    def scheduled_bucket(
        self, name: str, capacity: int, refill_every: float, refill_amount: int
    ) -> ScheduledBucket:
        return self._native.scheduled_bucket(name, capacity, refill_every, refill_amount)

    async def set_knobs(
        self,
        name: str,
        *,
        rps: Optional[float] = None,
        burst: Optional[float] = None,
        window: Optional[float] = None,
        ttl: Optional[float] = None,
    ) -> None:
        await self._native.set_knobs(name, rps=rps, burst=burst, window=window, ttl=ttl)

    async def reset_knobs(self, name: str) -> None:
        await self._native.reset_knobs(name)

    async def delete(self, name: str) -> None:
        await self._native.delete(name)


__all__ = [
    "Client",
    "ContinuousBucket",
    "LeakyBucket",
    "LeasedBucket",
    "Permit",
    "ScheduledBucket",
    "Semaphore",
    "TokenBucket",
]

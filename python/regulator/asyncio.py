"""The asyncio client: the same limiters as :mod:`regulator`, every call a coroutine.

    import regulator.asyncio
    client = await regulator.asyncio.Client.connect("redis://127.0.0.1:6379/0")
    orders = client.token_bucket("orders-db", rps=100)
    if await orders.consume():
        ...

Calls run on one shared Tokio runtime in background threads and never block the event loop.
Their outcomes come back through one socket per event loop, drained in one callback however
many are ready, so a burst of decisions costs the loop one wake-up. A leased bucket decides
from the lease in hand without leaving the event loop's thread. Cancelling a call aborts it.
"""

from __future__ import annotations

import asyncio
import weakref
from types import TracebackType
from typing import Any, Callable, Dict, Optional, Type

from . import _native
from ._native import ContinuousDecision, Decision, LeakyDecision, LeaseStats, Reservation


class _Bridge:
    """The outcomes of one event loop's calls: started with an id, resolved when drained."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.done = _native.Completions()
        self.futures: Dict[int, "asyncio.Future[Any]"] = {}
        self.next_id = 0
        loop.add_reader(self.done.fileno(), self._drain)

    def _drain(self) -> None:
        futures = self.futures
        for id_, ok, value in self.done.drain():
            fut = futures.pop(id_, None)
            if fut is None or fut.done():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    async def call(self, start: Callable[..., None], *args: Any, **kwargs: Any) -> Any:
        self.next_id += 1
        id_ = self.next_id
        fut = self.loop.create_future()
        self.futures[id_] = fut
        try:
            start(self.done, id_, *args, **kwargs)
        except BaseException:
            del self.futures[id_]
            raise
        try:
            return await fut
        except asyncio.CancelledError:
            self.futures.pop(id_, None)
            self.done.cancel(id_)
            raise


_bridges: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Bridge]" = weakref.WeakKeyDictionary()


def _bridge() -> _Bridge:
    loop = asyncio.get_running_loop()
    b = _bridges.get(loop)
    if b is None:
        b = _bridges[loop] = _Bridge(loop)
    return b


async def _call(start: Callable[..., None], *args: Any, **kwargs: Any) -> Any:
    return await _bridge().call(start, *args, **kwargs)


class LeasedBucket:
    """A token bucket deciding from local leases; see ``TokenBucket.leased``."""

    __slots__ = ("_native",)

    def __init__(self, native: _native.AsyncLeasedBucket) -> None:
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
        d: Decision = await _call(self._native.consume, tokens)
        return d

    async def consume_or(self, tokens: float = 1.0, mode: str = "closed") -> Decision:
        decided = self._native.decide_locally(tokens)
        if decided is not None:
            return decided
        d: Decision = await _call(self._native.consume_or, tokens, mode)
        return d

    async def wait(self, tokens: float = 1.0, *, max_wait: float) -> Decision:
        decided = self._native.decide_locally(tokens)
        if decided is not None and decided.allowed:
            return decided
        d: Decision = await _call(self._native.wait, tokens, max_wait=max_wait)
        return d

    async def release(self) -> None:
        await _call(self._native.release)


class TokenBucket:
    """A token bucket in Redis, shared with every worker that uses the same name."""

    __slots__ = ("_native",)

    def __init__(self, native: _native.AsyncTokenBucket) -> None:
        self._native = native

    @property
    def name(self) -> str:
        return self._native.name

    async def consume(self, tokens: float = 1.0) -> Decision:
        d: Decision = await _call(self._native.consume, tokens)
        return d

    async def consume_or(self, tokens: float = 1.0, mode: str = "closed") -> Decision:
        d: Decision = await _call(self._native.consume_or, tokens, mode)
        return d

    async def wait(self, tokens: float = 1.0, *, max_wait: float) -> Decision:
        d: Decision = await _call(self._native.wait, tokens, max_wait=max_wait)
        return d

    def leased(self, *, horizon: float = 0.05, max_share: float = 0.01) -> LeasedBucket:
        return LeasedBucket(self._native.leased(horizon=horizon, max_share=max_share))


class LeakyBucket:
    """A leaky bucket in Redis; see ``Client.leaky_bucket``."""

    __slots__ = ("_native",)

    def __init__(self, native: _native.AsyncLeakyBucket) -> None:
        self._native = native

    @property
    def name(self) -> str:
        return self._native.name

    async def consume(self, amount: float = 1.0) -> LeakyDecision:
        d: LeakyDecision = await _call(self._native.consume, amount)
        return d

    async def peek(self) -> LeakyDecision:
        d: LeakyDecision = await _call(self._native.peek)
        return d


class ContinuousBucket:
    """A continuous bucket in Redis; see ``Client.continuous_bucket``."""

    __slots__ = ("_native",)

    def __init__(self, native: _native.AsyncContinuousBucket) -> None:
        self._native = native

    @property
    def name(self) -> str:
        return self._native.name

    async def allow(self, tokens: float = 1.0) -> ContinuousDecision:
        d: ContinuousDecision = await _call(self._native.allow, tokens)
        return d


class Permit:
    """A held slot of a ``Semaphore``; ``async with`` releases it."""

    __slots__ = ("_native",)

    def __init__(self, native: _native.AsyncPermit) -> None:
        self._native = native

    @property
    def id(self) -> str:
        return self._native.id

    @property
    def capacity(self) -> int:
        return self._native.capacity

    @property
    def source(self) -> str:
        return self._native.source

    async def renew(self) -> None:
        await _call(self._native.renew)

    async def release(self) -> None:
        await _call(self._native.release)

    async def __aenter__(self) -> "Permit":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.release()


class Semaphore:
    """A fleet-wide semaphore in Redis; see ``Client.semaphore``."""

    __slots__ = ("_native",)

    def __init__(self, native: _native.AsyncSemaphore) -> None:
        self._native = native

    @property
    def name(self) -> str:
        return self._native.name

    async def acquire(self, max_wait: float = 0.0) -> Permit:
        return Permit(await _call(self._native.acquire, max_wait))

    async def try_acquire(self) -> Optional[Permit]:
        p: Optional[_native.AsyncPermit] = await _call(self._native.try_acquire)
        return None if p is None else Permit(p)


class ScheduledBucket:
    """A scheduled bucket in Redis; see ``Client.scheduled_bucket``."""

    __slots__ = ("_native",)

    def __init__(self, native: _native.AsyncScheduledBucket) -> None:
        self._native = native

    @property
    def name(self) -> str:
        return self._native.name

    async def reserve(self, tokens: int = 1, max_wait: Optional[float] = None) -> Reservation:
        r: Reservation = await _call(self._native.reserve, tokens, max_wait)
        return r

    async def acquire(self, tokens: int = 1, max_wait: Optional[float] = None) -> Reservation:
        r = await self.reserve(tokens, max_wait)
        await asyncio.sleep(r.wait)
        return r


class Client:
    """An async connection to Redis. Make one with ``await Client.connect(url)``."""

    __slots__ = ("_native",)

    def __init__(self, native: _native.AsyncClient) -> None:
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
        frozen_time: bool = False,
    ) -> "Client":
        native = await _call(
            _native.AsyncClient.connect,
            url,
            username=username,
            password=password,
            cluster=cluster,
            call_timeout=call_timeout,
            connect_timeout=connect_timeout,
            coalesce=coalesce,
            frozen_time=frozen_time,
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
        return LeakyBucket(self._native.leaky_bucket(name, rate, capacity, block=block))

    def continuous_bucket(self, name: str, tokens_per_period: float, period: float) -> ContinuousBucket:
        return ContinuousBucket(self._native.continuous_bucket(name, tokens_per_period, period))

    def semaphore(self, name: str, capacity: int, hold: float) -> Semaphore:
        return Semaphore(self._native.semaphore(name, capacity, hold))

    def scheduled_bucket(
        self, name: str, capacity: int, refill_every: float, refill_amount: int
    ) -> ScheduledBucket:
        return ScheduledBucket(self._native.scheduled_bucket(name, capacity, refill_every, refill_amount))

    async def set_knobs(
        self,
        name: str,
        *,
        rps: Optional[float] = None,
        burst: Optional[float] = None,
        window: Optional[float] = None,
        ttl: Optional[float] = None,
    ) -> None:
        await _call(self._native.set_knobs, name, rps=rps, burst=burst, window=window, ttl=ttl)

    async def reset_knobs(self, name: str) -> None:
        await _call(self._native.reset_knobs, name)

    async def delete(self, name: str) -> None:
        await _call(self._native.delete, name)


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

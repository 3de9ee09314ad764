"""limiters' API (otovo/redis-rate-limiters) on regulator's client:
``from regulator.compat.limiters import SyncSemaphore, AsyncTokenBucket, ...``.

The same pydantic models, fields, context managers and ``MaxSleepExceededError`` messages as
limiters 0.4, given the same redis-py client (sync or asyncio, standalone or cluster). The
state is regulator's: a semaphore is regulator's semaphore (``expiry`` is each holder's hold,
renewed by nobody, so a crashed holder frees its slot after ``expiry`` instead of leaking it
until the whole key expires), a token bucket is regulator's scheduled bucket (a caller that
would sleep past ``max_sleep`` takes nothing, where limiters still consumed the token), both
under ``throttle:<name>:...`` so the daemon's knobs apply. A changed ``capacity`` applies at
once. Needs pydantic, as limiters does.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from types import TracebackType
from typing import Any, Dict, List, Optional, Tuple, Type

import pydantic

if pydantic.VERSION.startswith("1."):
    from pydantic import BaseModel, Field, PrivateAttr
else:  # pydantic 2 ships the API limiters was written for as pydantic.v1
    from pydantic.v1 import BaseModel, Field, PrivateAttr  # type: ignore[assignment,no-redef,unused-ignore]

from .. import _native
from .. import asyncio as ra
from ..errors import MaxWaitExceeded, PermitExpired
from ._redis import connection_of, is_cluster

logger = logging.getLogger(__name__)

#: limiters' `max_sleep = 0`: wait as long as it takes.
_FOREVER = 365 * 24 * 3600.0


class MaxSleepExceededError(Exception):
    """Raised when we've slept for longer than the `max_sleep` specified limit."""


_sync_clients: Dict[Tuple[str, Optional[str], bool], _native.Client] = {}
_async_clients: Dict[Tuple[asyncio.AbstractEventLoop, str, Optional[str], bool], ra.Client] = {}
_lock = threading.Lock()


def _sync_client(connection: Any) -> _native.Client:
    url, username, password = connection_of(connection)
    cluster = is_cluster(connection)
    key = (url, username, cluster)
    with _lock:
        client = _sync_clients.get(key)
        if client is None:
            client = _sync_clients[key] = _native.Client(url, username=username, password=password, cluster=cluster)
    return client


async def _async_client(connection: Any) -> ra.Client:
    url, username, password = connection_of(connection)
    cluster = is_cluster(connection)
    key = (asyncio.get_running_loop(), url, username, cluster)
    client = _async_clients.get(key)
    if client is None:
        client = await ra.Client.connect(url, username=username, password=password, cluster=cluster)
        _async_clients[key] = client
    return client


class SemaphoreBase(BaseModel):
    name: str
    capacity: int = Field(gt=0)
    max_sleep: float = Field(ge=0, default=0.0)
    expiry: int = 30
    connection: Any

    class Config:
        arbitrary_types_allowed = True
        underscore_attrs_are_private = True

    _held: List[Any] = PrivateAttr(default_factory=list)

    @property
    def key(self) -> str:
        """The name limiters gave the semaphore's key (the state is regulator's)."""
        return f"{{limiter}}:semaphore:{self.name}"

    def __str__(self) -> str:
        return f"Semaphore instance for queue {self.key}"

    def _wait(self) -> float:
        return self.max_sleep if self.max_sleep > 0 else _FOREVER


def _released(e: Exception, name: str) -> None:
    logger.warning("semaphore %s: the hold (expiry) ran out before the release: %s", name, e)


class SyncSemaphore(SemaphoreBase):
    def __enter__(self) -> None:
        sem = _sync_client(self.connection).semaphore(self.name, self.capacity, float(self.expiry))
        try:
            permit = sem.acquire(max_wait=self._wait())
        except MaxWaitExceeded:
            raise MaxSleepExceededError("Max sleep exceeded waiting for Semaphore") from None
        self._held.append(permit)
        logger.debug("Acquired semaphore %s", self.name)

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc_val: Optional[BaseException],
        exc_tb: Optional[TracebackType],
    ) -> None:
        permit = self._held.pop()
        try:
            permit.release()
        except PermitExpired as e:
            _released(e, self.name)


class AsyncSemaphore(SemaphoreBase):
    async def __aenter__(self) -> None:
        client = await _async_client(self.connection)
        sem = client.semaphore(self.name, self.capacity, float(self.expiry))
        try:
            permit = await sem.acquire(max_wait=self._wait())
        except MaxWaitExceeded:
            raise MaxSleepExceededError(f"Max sleep ({self.max_sleep}s) exceeded waiting for Semaphore") from None
        self._held.append(permit)
        logger.debug("Acquired semaphore %s", self.name)

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc_val: Optional[BaseException],
        exc_tb: Optional[TracebackType],
    ) -> None:
        permit = self._held.pop()
        try:
            await permit.release()
        except PermitExpired as e:
            _released(e, self.name)


class TokenBucketBase(BaseModel):
    name: str
    capacity: int = Field(gt=0)
    refill_frequency: float = Field(gt=0)
    refill_amount: int = Field(gt=0)
    max_sleep: float = Field(ge=0, default=0.0)
    connection: Any

    class Config:
        arbitrary_types_allowed = True

    @property
    def key(self) -> str:
        """The name limiters gave the bucket's key (the state is regulator's)."""
        return f"{{limiter}}:token-bucket:{self.name}"

    def __str__(self) -> str:
        return f"Token bucket instance for queue {self.key}"

    def _bound(self) -> Optional[float]:
        return self.max_sleep if self.max_sleep != 0.0 else None

    def _exceeded(self, e: MaxWaitExceeded) -> MaxSleepExceededError:
        return MaxSleepExceededError(
            f"Scheduled to sleep `{e.retry_after}` seconds. "
            f"This exceeds the maximum accepted sleep time of `{self.max_sleep}` seconds for {self.name}."
        )


class SyncTokenBucket(TokenBucketBase):
    def __enter__(self) -> float:
        """Takes the next slot and sleeps until it; returns the sleep."""
        bucket = _sync_client(self.connection).scheduled_bucket(
            self.name, self.capacity, self.refill_frequency, self.refill_amount
        )
        try:
            r = bucket.reserve(1, self._bound())
        except MaxWaitExceeded as e:
            raise self._exceeded(e) from None
        if r.wait > 0:
            logger.info("Sleeping %s seconds (%s)", r.wait, self.name)
            time.sleep(r.wait)
        return r.wait

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc_val: Optional[BaseException],
        exc_tb: Optional[TracebackType],
    ) -> None:
        return


class AsyncTokenBucket(TokenBucketBase):
    async def __aenter__(self) -> None:
        client = await _async_client(self.connection)
        bucket = client.scheduled_bucket(self.name, self.capacity, self.refill_frequency, self.refill_amount)
        try:
            r = await bucket.reserve(1, self._bound())
        except MaxWaitExceeded as e:
            raise self._exceeded(e) from None
        if r.wait > 0:
            logger.info("Sleeping %s seconds (%s)", r.wait, self.name)
            await asyncio.sleep(r.wait)

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc_val: Optional[BaseException],
        exc_tb: Optional[TracebackType],
    ) -> None:
        return


__all__ = ["AsyncSemaphore", "AsyncTokenBucket", "MaxSleepExceededError", "SyncSemaphore", "SyncTokenBucket"]

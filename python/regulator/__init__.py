"""regulator for Python workers: every limiter of the Rust client, sharing state with
limitlion and with Rust workers, steered by the regulator daemon's knobs.

    import regulator
    client = regulator.Client("redis://127.0.0.1:6379/0")
    orders = client.token_bucket("orders-db", rps=100, burst=1, window=1)
    if orders.consume():
        ...

Blocking calls release the GIL while they wait on Redis. ``regulator.asyncio`` has the same
API for asyncio; ``regulator.compat`` has drop-in adapters for limitlion, aiosteady and
limiters.
"""

from __future__ import annotations

from . import errors
from ._native import (
    Client,
    ContinuousBucket,
    ContinuousDecision,
    Decision,
    LeakyBucket,
    LeakyDecision,
    LeasedBucket,
    LeaseStats,
    MemoryLimiter,
    Permit,
    Reservation,
    ScheduledBucket,
    Semaphore,
    TokenBucket,
)
from .errors import (
    AuthError,
    InvalidArgument,
    MaxWaitExceeded,
    NotClusterMode,
    PermitExpired,
    RedisError,
    RegulatorError,
    ScriptError,
    Timeout,
    Unavailable,
    Unreachable,
)

__all__ = [
    "AuthError",
    "Client",
    "ContinuousBucket",
    "ContinuousDecision",
    "Decision",
    "InvalidArgument",
    "LeakyBucket",
    "LeakyDecision",
    "LeaseStats",
    "LeasedBucket",
    "MaxWaitExceeded",
    "MemoryLimiter",
    "NotClusterMode",
    "Permit",
    "PermitExpired",
    "RedisError",
    "RegulatorError",
    "Reservation",
    "ScheduledBucket",
    "Semaphore",
    "ScriptError",
    "Timeout",
    "TokenBucket",
    "Unavailable",
    "Unreachable",
    "errors",
]

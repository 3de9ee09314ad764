"""Not a test that runs: `mypy --strict` checks that this use of the API type-checks, so the
stubs say what editors and type checkers need (make test runs it)."""

from __future__ import annotations

from typing import Optional

import regulator
import regulator.asyncio as ra
from regulator.compat import limitlion


def sync_worker(url: str) -> float:
    client = regulator.Client(url, call_timeout=0.5)
    bucket: regulator.TokenBucket = client.token_bucket("orders", rps=100, burst=1, window=1)
    d: regulator.Decision = bucket.consume(2.0)
    waited: regulator.Decision = bucket.wait(1, max_wait=0.5)
    leased: regulator.LeasedBucket = bucket.leased(horizon=0.05)
    stats: regulator.LeaseStats = leased.stats
    permit: Optional[regulator.Permit] = client.semaphore("pool", 4, 30.0).try_acquire()
    if permit is not None:
        with permit:
            permit.renew()
    reservation: regulator.Reservation = client.scheduled_bucket("s", 5, 1.0, 5).reserve(1, 0.5)
    level: float = client.leaky_bucket("l", 1.0, 10.0).consume().level
    allowed: bool = client.continuous_bucket("c", 10.0, 1.0).allow(0.5).allowed
    memory = regulator.MemoryLimiter(10.0, 5.0)
    try:
        bucket.consume_or(1, "open")
    except regulator.MaxWaitExceeded as e:
        return e.retry_after
    except regulator.RegulatorError as e:
        print(e.kind)
    ok, tokens, sleep = limitlion.throttle("orders", 10)
    return d.sleep + waited.tokens + stats.reserved + reservation.wait + level + float(allowed) + memory.tokens("k") + sleep + tokens + float(ok)


async def async_worker(url: str) -> bool:
    client: ra.Client = await ra.Client.connect(url)
    bucket = client.token_bucket("orders", rps=100)
    d: regulator.Decision = await bucket.consume()
    leased: ra.LeasedBucket = bucket.leased()
    d = await leased.consume()
    permit = await client.semaphore("pool", 4, 30.0).acquire(1.0)
    async with permit:
        await permit.renew()
    return d.allowed

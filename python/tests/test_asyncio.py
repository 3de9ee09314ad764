"""The asyncio API against a real redis-server."""

from __future__ import annotations

import asyncio
import time

import pytest

import regulator
import regulator.asyncio as ra


@pytest.mark.asyncio
async def test_concurrent_tasks_share_one_bucket_exactly(server):
    client = await ra.Client.connect(server.url)
    bucket = client.token_bucket("orders", rps=50, burst=1, window=60)
    results = await asyncio.gather(*(bucket.consume() for _ in range(5000)))
    assert sum(d.allowed for d in results) == 50 * 60
    assert results[-1].source == "defaults"


@pytest.mark.asyncio
async def test_the_event_loop_keeps_running_while_a_call_waits(server):
    client = await ra.Client.connect(server.url)
    bucket = client.token_bucket("slow", rps=1, burst=1, window=1)
    await bucket.consume()
    # The bucket refills on whole seconds of Redis's clock: this wait ends just after one
    # refill and takes its token, so the next wait lasts most of a second, wherever in a
    # second the test started (a wait begun near a boundary would be over in milliseconds).
    assert (await bucket.wait(1, max_wait=2.0)).allowed
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    ticker = asyncio.ensure_future(tick())
    started = time.monotonic()
    try:
        d = await bucket.wait(1, max_wait=2.0)
    finally:
        ticker.cancel()
    waited = time.monotonic() - started
    assert d.allowed
    assert waited > 0.3, f"the wait lasted only {waited:.3f} s"
    assert ticks > 50, f"the loop ticked only {ticks} times during a {waited:.3f} s wait"


@pytest.mark.asyncio
async def test_a_leased_bucket_decides_locally_in_the_loop(server):
    client = await ra.Client.connect(server.url)
    leased = client.token_bucket("leased", rps=100_000).leased(horizon=0.5)
    allowed = 0
    for _ in range(5000):
        allowed += (await leased.consume()).allowed
    assert allowed == 5000
    assert leased.stats.calls * 20 < leased.stats.decisions
    await leased.release()


@pytest.mark.asyncio
async def test_async_errors_are_the_same_exceptions(server, dead_url):
    client = await ra.Client.connect(server.url)
    with pytest.raises(regulator.InvalidArgument):
        await client.token_bucket("orders", rps=5).consume(-1)
    bucket = client.token_bucket("one", rps=1, burst=1, window=1)
    await bucket.consume()
    # Just after a whole second's refill (this wait takes its token), the next is most of a
    # second away.
    assert (await bucket.wait(1, max_wait=2.0)).allowed
    with pytest.raises(regulator.MaxWaitExceeded):
        await bucket.wait(1, max_wait=0.01)
    with pytest.raises(regulator.Unreachable):
        await ra.Client.connect(dead_url, connect_timeout=0.2)


@pytest.mark.asyncio
async def test_an_async_semaphore_is_an_async_context_manager(server):
    client = await ra.Client.connect(server.url)
    sem = client.semaphore("pool", capacity=1, hold=10)
    async with await sem.acquire() as permit:
        assert permit.capacity == 1
        assert await sem.try_acquire() is None
    again = await sem.try_acquire()
    assert again is not None
    await again.release()
    assert server.redis().zcard("throttle:pool:holders") == 0


@pytest.mark.asyncio
async def test_the_other_limiters_answer_in_asyncio(server):
    client = await ra.Client.connect(server.url)
    leaky = client.leaky_bucket("drip", rate=1, capacity=2)
    assert [bool(await leaky.consume()) for _ in range(3)] == [True, True, False]
    cont = client.continuous_bucket("smooth", tokens_per_period=3, period=1)
    assert [bool(await cont.allow()) for _ in range(4)] == [True, True, True, False]
    sched = client.scheduled_bucket("sched", capacity=1, refill_every=0.05, refill_amount=1)
    first = await sched.reserve(1, max_wait=1)
    second = await sched.acquire(1, max_wait=1)
    assert first.wait == 0 and second.wait > 0


@pytest.mark.asyncio
async def test_a_cancelled_wait_stops_at_once(server):
    client = await ra.Client.connect(server.url)
    bucket = client.token_bucket("cancel", rps=0.2, burst=1, window=5)  # 1 token a 5 s window
    assert (await bucket.consume()).allowed
    task = asyncio.ensure_future(bucket.wait(1, max_wait=10))
    await asyncio.sleep(0.05)
    assert not task.done()
    cancelled = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - cancelled < 0.5
    assert len(ra._bridge().done) == 0, "the operation was aborted, not left running"

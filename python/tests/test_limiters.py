"""The blocking API against a real redis-server: each limiter's behaviour, its errors, and
the GIL released while a call waits."""

from __future__ import annotations

import gc
import time

import pytest

import regulator
from regulator import errors

from conftest import Counter, allowed_in_threads


def test_a_token_bucket_gives_its_capacity_then_denies_with_the_windows_rest(server):
    client = regulator.Client(server.url)
    # Ten tokens a 50 s window: no refill while the test runs.
    bucket = client.token_bucket("orders", rps=0.2, burst=1, window=50)
    decisions = [bucket.consume() for _ in range(12)]
    assert sum(d.allowed for d in decisions) == 10
    denied = decisions[-1]
    assert not denied and not denied.allowed
    assert 0 < denied.sleep <= 50.0
    assert denied.source == "defaults"
    assert denied.capacity == 10
    assert bucket.name == "orders"


def test_knobs_stored_in_redis_override_the_callers_defaults(server):
    server.redis().hset("throttle:orders:knobs", mapping={"rps": 0.1, "burst": 1, "window": 30})
    bucket = regulator.Client(server.url).token_bucket("orders", rps=1000)
    allowed = [bucket.consume().allowed for _ in range(5)]
    assert allowed == [True, True, True, False, False]
    assert bucket.consume().source == "knobs"


def test_bad_requests_raise_invalid_argument_before_any_call(server):
    client = regulator.Client(server.url)
    bucket = client.token_bucket("orders", rps=5)
    for tokens in (0, -3, float("nan"), float("inf")):
        with pytest.raises(regulator.InvalidArgument) as e:
            bucket.consume(tokens)
        assert isinstance(e.value, ValueError)
        assert e.value.kind == "invalid_argument"
    with pytest.raises(regulator.InvalidArgument):
        client.token_bucket("orders:knobs", rps=5).consume()
    with pytest.raises(regulator.InvalidArgument):
        bucket.consume_or(1, mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(regulator.InvalidArgument):
        bucket.wait(1, max_wait=-1)
    assert not server.redis().exists("throttle:orders")


def test_an_unreachable_redis_raises_or_falls_back_by_mode(dead_url):
    with pytest.raises(regulator.Unreachable) as e:
        regulator.Client(dead_url, connect_timeout=0.2)
    assert isinstance(e.value, ConnectionError) and isinstance(e.value, regulator.Unavailable)


def test_consume_or_decides_by_mode_when_redis_goes_away(tmp_path):
    from conftest import start_redis

    s = start_redis(tmp_path)
    client = regulator.Client(s.url, call_timeout=0.2)
    bucket = client.token_bucket("orders", rps=5)
    assert bucket.consume().allowed
    s.process.kill()
    s.process.wait()
    opened = bucket.consume_or(1, "open")
    closed = bucket.consume_or(1, "closed")
    assert opened.allowed and not closed.allowed
    assert opened.source == closed.source == "unavailable"
    with pytest.raises(regulator.Unavailable):
        bucket.consume()


def test_wait_sleeps_on_the_hint_and_gives_up_at_max_wait(server):
    bucket = regulator.Client(server.url).token_bucket("orders", rps=1, burst=1, window=1)
    assert bucket.consume().allowed
    # Refills come on whole seconds of Redis's clock: this wait ends just after one and takes
    # its token, so the next token is most of a second away, not a few milliseconds.
    assert bucket.wait(1, max_wait=2.0).allowed
    started = time.monotonic()
    with pytest.raises(regulator.MaxWaitExceeded) as e:
        bucket.wait(1, max_wait=0.05)
    assert time.monotonic() - started < 0.5, "returns as soon as it knows"
    assert 0 < e.value.retry_after <= 1.0
    d = bucket.wait(1, max_wait=2.0)
    assert d.allowed


def test_a_thread_waiting_on_redis_lets_the_others_run(server):
    """The GIL is released during every wait: a counting thread keeps counting."""
    bucket = regulator.Client(server.url).token_bucket("slow", rps=1, burst=1, window=1)
    bucket.consume()
    with Counter() as counter:
        bucket.wait(1, max_wait=2.0)  # sleeps most of a second inside the binding
    during = counter.counted
    assert during > 100_000, f"the other thread counted only {during} while this one waited"


def test_threads_sharing_a_bucket_get_exactly_its_capacity(server):
    bucket = regulator.Client(server.url).token_bucket("shared", rps=500, burst=1, window=60)
    assert allowed_in_threads(bucket, threads=8, each=4000) == 500 * 60


def test_a_leased_bucket_decides_locally_and_spends_only_what_it_took(server):
    client = regulator.Client(server.url)
    leased = client.token_bucket("leased", rps=100_000, burst=1, window=1).leased(horizon=0.5)
    allowed = sum(leased.consume().allowed for _ in range(20_000))
    stats = leased.stats
    assert allowed == stats.decisions
    assert stats.calls * 20 < stats.decisions, stats
    leased.release()
    stats = leased.stats
    assert stats.reserved - stats.returned - stats.dropped == pytest.approx(allowed)


def test_a_leaky_bucket_fills_drains_and_blocks(server):
    client = regulator.Client(server.url)
    leaky = client.leaky_bucket("drip", rate=1, capacity=3, block=5)
    results = [leaky.consume() for _ in range(4)]
    assert [bool(r) for r in results] == [True, True, True, False]
    assert results[2].level == pytest.approx(3, abs=0.01)
    peek = leaky.peek()
    assert 4.0 < peek.blocked_for <= 5.0, peek


def test_a_continuous_bucket_refills_smoothly(server):
    bucket = regulator.Client(server.url).continuous_bucket("smooth", tokens_per_period=10, period=1)
    assert sum(bucket.allow().allowed for _ in range(12)) == 10
    time.sleep(0.25)
    d = bucket.allow(2)
    assert d.allowed, d
    assert d.decision_time_us > 1_600_000_000_000_000


def test_a_semaphore_holds_capacity_across_threads_and_releases_on_exit(server):
    sem = regulator.Client(server.url).semaphore("pool", capacity=2, hold=10)
    a = sem.acquire()
    with sem.acquire() as b:
        assert b.held and b.id != a.id
        assert sem.try_acquire() is None
        with pytest.raises(regulator.MaxWaitExceeded):
            sem.acquire(max_wait=0.05)
    assert not b.held
    c = sem.try_acquire()
    assert c is not None
    a.release()
    a.release()  # a second release does nothing
    c.renew()
    c.release()
    with pytest.raises(regulator.InvalidArgument):
        c.renew()
    assert server.redis().zcard("throttle:pool:holders") == 0


def test_a_permit_collected_unreleased_gives_its_slot_back_without_holding_the_gil(server):
    sem = regulator.Client(server.url, call_timeout=5).semaphore("collected", capacity=1, hold=30)
    p = sem.acquire()
    assert server.redis().zcard("throttle:collected:holders") == 1
    # Redis holds every write (the release script) for 1 s: the release waits for it.
    server.redis().execute_command("CLIENT", "PAUSE", 1000, "WRITE")
    with Counter() as counter:
        started = time.monotonic()
        del p
        gc.collect()
        waited = time.monotonic() - started
    during = counter.counted
    assert waited > 0.5, f"the release did not wait for Redis ({waited:.3f} s)"
    # Free to run for the whole second, the other thread counts millions (18 M here); with
    # the GIL held through the release it counted 78 k.
    assert during > 1_000_000, f"the other thread counted only {during} during the release"
    assert server.redis().zcard("throttle:collected:holders") == 0
    assert sem.try_acquire() is not None


def test_a_permit_whose_hold_ran_out_says_so(server):
    sem = regulator.Client(server.url).semaphore("short", capacity=1, hold=0.05)
    p = sem.acquire()
    time.sleep(0.1)
    with pytest.raises(regulator.PermitExpired) as e:
        p.renew()
    assert e.value.name == "short"


def test_a_scheduled_bucket_gives_slots_in_order(server):
    bucket = regulator.Client(server.url).scheduled_bucket("sched", capacity=2, refill_every=0.1, refill_amount=1)
    waits = [bucket.reserve(1, max_wait=1.0).wait for _ in range(4)]
    assert waits[0] == waits[1] == 0
    assert 0.05 < waits[2] <= 0.1 + 0.01
    assert waits[3] > waits[2]
    with pytest.raises(regulator.MaxWaitExceeded):
        bucket.reserve(1, max_wait=0.0)
    with pytest.raises(regulator.InvalidArgument):
        bucket.reserve(0)


def test_the_memory_limiter_needs_no_redis():
    limiter = regulator.MemoryLimiter(rate=10, capacity=3)
    assert [limiter.try_consume("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.try_consume("b")
    assert len(limiter) == 2
    d = limiter.consume("a")
    assert not d and d.source == "local"
    with pytest.raises(regulator.InvalidArgument):
        regulator.MemoryLimiter(rate=-1, capacity=3)


def test_every_error_is_a_regulator_error_with_its_kind():
    for cls in (
        errors.InvalidArgument,
        errors.Unreachable,
        errors.Timeout,
        errors.AuthError,
        errors.ScriptError,
        errors.NotClusterMode,
        errors.RedisError,
    ):
        e = errors._from_kind(cls.kind, "m")
        assert type(e) is cls and isinstance(e, errors.RegulatorError)
    e = errors._from_kind("max_wait_exceeded", "m", 0.5, 0.25)
    assert isinstance(e, errors.MaxWaitExceeded) and (e.waited, e.retry_after) == (0.5, 0.25)
    assert type(errors._from_kind("something_new", "m")) is errors.RegulatorError

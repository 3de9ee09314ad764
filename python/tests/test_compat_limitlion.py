"""`regulator.compat.limitlion` against limitlion itself: the same calls at the same frozen
times give the same answers, on one shared bucket too."""

from __future__ import annotations

import itertools

import limitlion
import pytest
import redis

from regulator.compat import limitlion as adapter


def freeze(r: redis.Redis, second: int, micro: int = 0) -> None:
    r.set("frozen_second", second)
    r.set("frozen_microsecond", micro)


@pytest.fixture
def both(server):
    r = server.redis()
    limitlion.throttle_configure(r, testing=True)
    adapter.throttle_configure(r, testing=True)
    return r


GRID = list(itertools.product([1, 2, 5], [1, 2, 3.3], [0.2, 1, 2.2, 10]))


@pytest.mark.parametrize("window,burst,rps", GRID)
def test_the_adapter_answers_as_limitlion_does(both, window, burst, rps):
    r = both
    t0 = 1_700_000_000
    for step in range(30):
        second, micro = t0 + step // 4, (step % 4) * 250_000
        freeze(r, second, micro)
        want = limitlion.throttle("orig", rps, burst, window)
        got = adapter.throttle("copy", rps, burst, window)
        assert got[0] == want[0] and got[1] == want[1], (step, got, want)
        assert got[2] == pytest.approx(want[2], abs=1e-6), (step, got, want)


def test_limitlion_and_the_adapter_share_one_bucket(both):
    r = both
    freeze(r, 1_700_000_000)
    taken = []
    for i in range(20):
        f = limitlion.throttle if i % 2 else adapter.throttle
        taken.append(f("shared", 5, 2, 1)[0])
    assert sum(taken) == 10
    adapter.throttle_set("shared", rps=1, burst=2, window=1)
    assert limitlion.throttle_get("shared")[2:] == [b"1", b"2", b"1"]
    assert adapter.throttle_get("shared") == limitlion.throttle_get("shared")


def test_the_adapters_knob_helpers_behave_as_limitlions(both):
    with pytest.raises(ValueError):
        adapter.throttle_set("x", rps=-1)
    with pytest.raises(IndexError):
        adapter.throttle_set("missing", rps=1)
    adapter.throttle("x", 5, 1, 1)
    adapter.throttle_set("x", rps=2, burst=1, window=1)
    assert adapter.throttle_get("x")[2:] == [b"2", b"1", b"1"]
    adapter.throttle_reset("x")
    assert both.exists("throttle:x:knobs") == 0
    adapter.throttle_delete("x")
    assert both.exists("throttle:x") == 0


def test_throttle_wait_sleeps_until_allowed(both):
    both.delete("frozen_second", "frozen_microsecond")
    wait = adapter.throttle_wait("w", rps=10, burst=1, window=0.1)
    assert all(wait()[0] for _ in range(3))

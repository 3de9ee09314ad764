"""limitlion's API on regulator's client: ``from regulator.compat import limitlion``.

Same functions, arguments, return values and Redis keys as limitlion 1.1, so workers on this
adapter, on limitlion itself and on the Rust client share one bucket; the decisions are made
by regulator's script (wire-compatible, and it never deletes a bucket whose
``burst * window`` is below 0.5, where limitlion's EXPIRE 0 would).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .._native import Client, TokenBucket
from ._redis import connection_of

KEY_FORMAT = "throttle:{}"
THROTTLE_BURST_DEFAULT = 1
THROTTLE_WINDOW_DEFAULT = 5
THROTTLE_REQUESTED_TOKENS_DEFAULT = 1
DEFAULT_KNOBS_TTL = 60 * 60 * 24 * 7

_client: Optional[Client] = None
_redis: Any = None
_buckets: Dict[Tuple[str, float, float, float, float], TokenBucket] = {}


def _verify_configured() -> Client:
    if _client is None:
        raise RuntimeError("Throttle is not configured")
    return _client


def throttle_configure(redis_instance: Any, testing: bool = False) -> None:
    """Connects to the Redis that ``redis_instance`` (a redis-py client) talks to.

    ``testing`` freezes time as limitlion's does: the scripts read ``frozen_second`` and
    ``frozen_microsecond`` when they exist.
    """
    global _client, _redis
    url, username, password = connection_of(redis_instance)
    _client = Client(url, username=username, password=password, frozen_time=testing)
    _redis = redis_instance
    _buckets.clear()


def throttle(
    name: str,
    rps: float,
    burst: float = THROTTLE_BURST_DEFAULT,
    window: float = THROTTLE_WINDOW_DEFAULT,
    requested_tokens: float = THROTTLE_REQUESTED_TOKENS_DEFAULT,
    knobs_ttl: float = DEFAULT_KNOBS_TTL,
) -> Tuple[bool, int, float]:
    """limitlion's ``throttle``: ``(allowed, tokens left, seconds to sleep if denied)``."""
    client = _verify_configured()
    key = (name, float(rps), float(burst), float(window), float(knobs_ttl))
    bucket = _buckets.get(key)
    if bucket is None:
        bucket = client.token_bucket(name, float(rps), float(burst), float(window), knobs_ttl=float(knobs_ttl))
        _buckets[key] = bucket
    d = bucket.consume(float(requested_tokens))
    # limitlion's script returns the sleep as "%.6f" text: the same float, to the bit.
    return d.allowed, int(d.tokens), float("%.6f" % d.sleep)


def throttle_wait(name: str, *args: Any, **kwargs: Any) -> Callable[..., Tuple[bool, int, float]]:
    """limitlion's ``throttle_wait``: a function that sleeps until allowed (or ``max_wait``)."""
    max_wait = kwargs.pop("max_wait", None)

    def throttle_func(requested_tokens: float = 1) -> Tuple[bool, int, float]:
        start_time = time.time()
        allowed, tokens, sleep = throttle(name, *args, requested_tokens=requested_tokens, **kwargs)  # type: ignore[misc]
        while not allowed:
            if max_wait is not None and time.time() - start_time > max_wait:
                break
            time.sleep(sleep)
            allowed, tokens, sleep = throttle(name, *args, requested_tokens=requested_tokens, **kwargs)  # type: ignore[misc]
        return allowed, tokens, sleep

    return throttle_func


def throttle_delete(name: str) -> None:
    """Deletes the bucket and the knobs."""
    _verify_configured()
    key = KEY_FORMAT.format(name)
    pipeline = _redis.pipeline()
    pipeline.delete(key)
    pipeline.delete(key + ":knobs")
    pipeline.execute()


def throttle_get(name: str) -> List[Any]:
    """``[tokens, refreshed, rps, burst, window]`` as stored (bytes, or None)."""
    pipe = _redis.pipeline()
    key = KEY_FORMAT.format(name)
    pipe.hget(key, "tokens")
    pipe.hget(key, "refreshed")
    pipe.hget(key + ":knobs", "rps")
    pipe.hget(key + ":knobs", "burst")
    pipe.hget(key + ":knobs", "window")
    return list(pipe.execute())


def throttle_reset(name: str) -> None:
    """Deletes the knobs: the callers' defaults apply again."""
    _verify_configured().reset_knobs(name)


def throttle_set(
    name: str,
    rps: Optional[float] = None,
    burst: Optional[float] = None,
    window: Optional[float] = None,
    knobs_ttl: Optional[float] = None,
) -> None:
    """Sets knobs as limitlion does: values must be floats >= 0; a knob left out must exist."""
    _verify_configured()
    key = KEY_FORMAT.format(name) + ":knobs"
    params = [(rps, "rps"), (burst, "burst"), (window, "window")]
    check = _redis.pipeline()
    for param, param_name in params:
        if param is not None:
            try:
                assert float(param) >= 0
            except (ValueError, AssertionError):
                raise ValueError(
                    '"{}" is not a valid throttle value. Throttle values must '
                    "be positive floats.".format(param)
                )
        else:
            check.hexists(key, param_name)
    if not all(check.execute()):
        raise IndexError("Throttle knob {} doesn't exist or is invalid".format(key))
    pipe = _redis.pipeline()
    for param, param_name in params:
        if param is not None:
            pipe.hset(key, param_name, param)
    if knobs_ttl:
        pipe.expire(key, knobs_ttl)
    pipe.execute()


__all__ = [
    "DEFAULT_KNOBS_TTL",
    "KEY_FORMAT",
    "throttle",
    "throttle_configure",
    "throttle_delete",
    "throttle_get",
    "throttle_reset",
    "throttle_set",
    "throttle_wait",
]

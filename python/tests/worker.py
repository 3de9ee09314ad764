"""A worker process for the fleet tests: takes tokens from one throttle as fast as it can
until the key `stop` exists, then prints one JSON line {"allowed": n, "calls": m}.

    python worker.py <redis url> <name> <binding|leased|limitlion|compat>
"""

from __future__ import annotations

import json
import sys
import time

import redis


def main() -> None:
    url, name, mode = sys.argv[1:4]
    r = redis.Redis.from_url(url)
    if mode in ("binding", "leased"):
        import regulator

        bucket = regulator.Client(url).token_bucket(name, rps=1, burst=1, window=1)
        take = bucket.leased().consume if mode == "leased" else bucket.consume

        def once() -> tuple:
            d = take()
            return d.allowed, d.sleep

    else:
        if mode == "limitlion":
            import limitlion
        else:
            from regulator.compat import limitlion  # type: ignore[no-redef]
        limitlion.throttle_configure(r)

        def once() -> tuple:
            allowed, _, sleep = limitlion.throttle(name, 1, 1, 1)
            return allowed, sleep

    r.set(f"started:{mode}", 1)
    allowed = calls = 0
    while not r.exists("stop"):
        for _ in range(20):
            ok, sleep = once()
            calls += 1
            allowed += int(ok)
            if not ok:
                time.sleep(min(sleep, 0.005))
    print(json.dumps({"allowed": allowed, "calls": calls}))


if __name__ == "__main__":
    main()

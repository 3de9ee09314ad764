"""Side by side in one run: first the per-call latency of the binding against the Rust
blocking client (`blocking_rtt`), alternating, before anything else runs in the process; then
Python decisions per second in one process: limitlion's `throttle()` in threads, the
binding's blocking `consume()` in threads (coalesced), its asyncio `consume()` in tasks
(coalesced) and its leased bucket.

    python bench/decisions.py --redis redis://127.0.0.1:6379/0 --seconds 4 --threads 1,8,32 \
        --tasks 64,256 --rounds 3 --rtt-bin target/release/examples/blocking_rtt

Every bucket has a limit far above what is reached, so each call runs the script's full
path. Prints Markdown tables, medians over the rounds; "vs limitlion" divides by limitlion's
best thread count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import threading
import time
from typing import Callable, Dict, List

import limitlion
import redis

import regulator
import regulator.asyncio as ra


def rate(make: Callable[[], Callable[[], object]], threads: int, seconds: float) -> float:
    """Decisions per second of `threads` threads each calling its own `make()` in a loop."""
    counts = [0] * threads
    stop = threading.Event()
    start = threading.Barrier(threads + 1)

    def run(i: int) -> None:
        call = make()
        call()
        start.wait()
        n = 0
        while not stop.is_set():
            for _ in range(64):
                call()
            n += 64
        counts[i] = n

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    return sum(counts) / (time.perf_counter() - began)


def async_rate(url: str, name: str, tasks: int, seconds: float) -> float:
    """Decisions per second of `tasks` asyncio tasks each awaiting `consume()` in a loop."""

    async def run() -> float:
        client = await ra.Client.connect(url)
        bucket = client.token_bucket(name, 1e9)
        count = 0
        stop = False

        async def worker() -> None:
            nonlocal count
            while not stop:
                await bucket.consume()
                count += 1

        workers = [asyncio.ensure_future(worker()) for _ in range(tasks)]
        await asyncio.sleep(0.5)
        count = 0
        began = time.perf_counter()
        await asyncio.sleep(seconds)
        result = count / (time.perf_counter() - began)
        stop = True
        await asyncio.gather(*workers)
        return result

    return asyncio.run(run())


def p50_us(call: Callable[[], object], calls: int) -> float:
    for _ in range(1000):
        call()
    samples = []
    for _ in range(calls):
        t = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - t)
    return statistics.median(samples) / 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--threads", default="1,8,32")
    ap.add_argument("--tasks", default="64,256")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--latency-rounds", type=int, default=7)
    ap.add_argument("--rtt-bin", default="target/release/examples/blocking_rtt")
    args = ap.parse_args()

    r = redis.Redis.from_url(args.redis)
    limitlion.throttle_configure(r)
    client = regulator.Client(args.redis)
    big = 1e9
    clients: Dict[str, Callable[[], Callable[[], object]]] = {
        "limitlion throttle()": lambda: (lambda: limitlion.throttle("bench-ll", big, 1, 1)),
        "binding consume()": lambda: client.token_bucket("bench-py", big).consume,
        "binding leased consume()": lambda: client.token_bucket("bench-lease", big).leased().consume,
    }
    # Per-call latency first, before any other thread or runtime runs in this process: one
    # thread, alternating binding and Rust so both see the same noise, over more rounds than
    # the throughput (a p50 near 80 µs swings by 20 µs from one run of calls to the next).
    bucket = client.token_bucket("rtt-py", big)
    py, rust = [], []
    for _ in range(args.latency_rounds):
        py.append(p50_us(bucket.consume, args.calls))
        out = subprocess.run(
            [args.rtt_bin, "--redis", args.redis, "--calls", str(args.calls)],
            check=True, stdout=subprocess.PIPE, text=True,
        ).stdout
        rust.append(float(json.loads(out.strip().splitlines()[-1])["p50_us"]))
    ll = p50_us(lambda: limitlion.throttle("rtt-ll", big, 1, 1), args.calls)
    print("| one thread, per call | p50 µs (median of %d) |" % args.latency_rounds)
    print("|---|---|")
    print(f"| Rust blocking client (blocking_rtt) | {statistics.median(rust):.1f} |")
    print(f"| binding consume() | {statistics.median(py):.1f} |")
    print(f"| limitlion throttle() | {ll:.1f} |")
    print(f"\nbinding / Rust p50: {statistics.median(py) / statistics.median(rust):.2f}")
    print()

    results: Dict[str, Dict[int, List[float]]] = {k: {} for k in clients}
    results["binding asyncio consume()"] = {}
    threads = [int(t) for t in args.threads.split(",")]
    tasks = [int(t) for t in args.tasks.split(",")]
    for _ in range(args.rounds):
        for n in threads:
            for name, make in clients.items():
                results[name].setdefault(n, []).append(rate(make, n, args.seconds))
        for n in tasks:
            results["binding asyncio consume()"].setdefault(n, []).append(
                async_rate(args.redis, "bench-async", n, args.seconds)
            )
    base = max(statistics.median(v) for v in results["limitlion throttle()"].values())
    print("| client | threads or tasks | decisions/s (median of %d) | vs limitlion's best |" % args.rounds)
    print("|---|---|---|---|")
    for name, by_n in results.items():
        for n, values in by_n.items():
            m = statistics.median(values)
            unit = "tasks" if "asyncio" in name else "threads"
            print(f"| {name} | {n} {unit} | {m:,.0f} | {m / base:.1f}x |")



if __name__ == "__main__":
    main()

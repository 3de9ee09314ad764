"""A Python service whose workers take tokens with the real limitlion, for regulator to steer.

Workers: --threads threads, each looping `limitlion.throttle_wait(name)` then one query.
Database: in-process, a pool of --pool connections taken first come first served (a
queue.Queue, as SQLAlchemy's QueuePool), each query holding one for a log-normal time
(sigma --sigma) whose mean is pool / capacity, so the pool serves `capacity` queries a second.
A query that waits --timeout for a connection fails and is observed at the timeout.
Capacity follows --capacities, one value per --phase seconds.

The latency (wait for a connection + service) goes to the prometheus_client histogram
`svc_query_seconds`, exported on 127.0.0.1:--metrics-port for Prometheus to scrape.

When the run ends it prints one JSON line per second of the run:
  {"t": second, "capacity": c, "served": queries that completed in time and started then,
   "p99": p99 latency of the queries that started then (null when none), "timeouts": n,
   "rps", "burst", "window": the knobs stored in Redis at that second (null when none)}

`--slo-capacity TARGET` instead prints, for each capacity, the highest whole rate the pool
serves with p99 <= TARGET when each second's tokens arrive at once at the start of the second,
as limitlion delivers them (it refills whole seconds of Redis TIME): found by simulating the
same pool over --slo-seconds seconds per probe, without sleeping.
"""

import argparse
import heapq
import json
import math
import queue
import random
import threading
import time

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8,
                   0.9, 1.0, 1.1, 1.2, 1.4, 1.6, 2.0, 2.5, 3.0, 5.0)


def service_mu(mean, sigma):
    """The log-normal mu whose mean is `mean`."""
    return math.log(mean) - sigma * sigma / 2


def p99(values):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


class Database:
    """A pool of connections; its capacity (queries a second) can be changed while running."""

    def __init__(self, pool, sigma, timeout):
        self.pool = pool
        self.sigma = sigma
        self.timeout = timeout
        self.connections = queue.Queue()
        for i in range(pool):
            self.connections.put(i)
        self.capacity = 1.0
        self.rng = random.Random(7)
        self.lock = threading.Lock()

    def service_time(self):
        with self.lock:
            mean = self.pool / self.capacity
            return self.rng.lognormvariate(service_mu(mean, self.sigma), self.sigma)

    def query(self):
        """Runs one query; returns (latency, ok)."""
        start = time.monotonic()
        try:
            conn = self.connections.get(timeout=self.timeout)
        except queue.Empty:
            return self.timeout, False
        try:
            time.sleep(self.service_time())
        finally:
            self.connections.put(conn)
        return time.monotonic() - start, True


def run(args):
    import limitlion
    import prometheus_client
    import redis

    client = redis.Redis(host="127.0.0.1", port=args.redis_port)
    limitlion.throttle_configure(client)
    histogram = prometheus_client.Histogram(
        "svc_query_seconds", "Query latency: wait for a connection + service",
        buckets=LATENCY_BUCKETS)
    prometheus_client.start_http_server(args.metrics_port, addr="127.0.0.1")

    capacities = [float(c) for c in args.capacities.split(",")]
    db = Database(args.pool, args.sigma, args.timeout)
    db.capacity = capacities[0]
    start = time.monotonic()
    end = start + args.phase * len(capacities)
    records = []  # (start offset, latency, ok), appended under the GIL
    knobs = {}
    stop = threading.Event()

    def worker():
        wait = limitlion.throttle_wait(args.name, rps=args.default_rps, burst=1, window=1)
        while not stop.is_set():
            wait()
            began = time.monotonic()
            if began >= end:
                return
            latency, ok = db.query()
            histogram.observe(latency)
            records.append((began - start, latency, ok))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.threads)]
    for t in threads:
        t.start()
    second = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        db.capacity = capacities[min(len(capacities) - 1, int((now - start) // args.phase))]
        stored = client.hmget(f"throttle:{args.name}:knobs", "rps", "burst", "window")
        knobs[second] = [None if v is None else float(v) for v in stored]
        second += 1
        time.sleep(max(0.0, start + second - time.monotonic()))
    stop.set()
    for t in threads:
        t.join(timeout=args.timeout + 5)

    by_second = {}
    for began, latency, ok in list(records):
        by_second.setdefault(int(began), []).append((latency, ok))
    for s in range(int(args.phase * len(capacities))):
        rows = by_second.get(s, [])
        rps, burst, window = knobs.get(s, [None, None, None])
        print(json.dumps({
            "t": s,
            "capacity": capacities[min(len(capacities) - 1, int(s // args.phase))],
            "served": sum(1 for _, ok in rows if ok),
            "p99": p99([latency for latency, _ in rows]),
            "timeouts": sum(1 for _, ok in rows if not ok),
            "rps": rps, "burst": burst, "window": window,
        }), flush=True)


def simulated_p99(capacity, rate, args, rng):
    """p99 latency of `rate` queries arriving together at each second's start."""
    mean = args.pool / capacity
    mu = service_mu(mean, args.sigma)
    free = [0.0] * args.pool  # when each connection is next free
    latencies = []
    for second in range(args.slo_seconds):
        for _ in range(rate):
            at = free[0]
            wait = max(0.0, at - second)
            if wait >= args.timeout:
                latencies.append(args.timeout)
                continue
            done = max(at, second) + rng.lognormvariate(mu, args.sigma)
            heapq.heapreplace(free, done)
            latencies.append(done - second)
    return p99(latencies)


def slo_capacity(args):
    out = {}
    for capacity in [float(c) for c in args.capacities.split(",")]:
        # p99 grows with the rate: bisect for the last rate within the target.
        good, bad = 0, int(capacity * 2) + 1
        while bad - good > 1:
            rate = (good + bad) // 2
            if simulated_p99(capacity, rate, args, random.Random(rate)) <= args.slo_capacity:
                good = rate
            else:
                bad = rate
        out[str(capacity)] = good
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--redis-port", type=int)
    p.add_argument("--metrics-port", type=int)
    p.add_argument("--name", default="svc")
    p.add_argument("--threads", type=int, default=48)
    p.add_argument("--pool", type=int, default=8)
    p.add_argument("--sigma", type=float, default=0.3)
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--capacities", default="80,35,80")
    p.add_argument("--phase", type=float, default=80.0)
    p.add_argument("--default-rps", type=float, default=150.0)
    p.add_argument("--slo-capacity", type=float, metavar="TARGET")
    p.add_argument("--slo-seconds", type=int, default=400)
    args = p.parse_args()
    if args.slo_capacity is not None:
        slo_capacity(args)
    else:
        run(args)


if __name__ == "__main__":
    main()

"""Python workers on the binding, on the limitlion adapter and on limitlion itself, and a Rust
worker, all on one bucket: together never more than the budget, and each gets a share."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from conftest import loadgen

WORKER = str(Path(__file__).with_name("worker.py"))
RPS = 400


def anchor_empty(server, name: str, rps: int) -> int:
    """Sets the knobs and empties the bucket with its window starting now (Redis time)."""
    return int(
        server.redis().eval(
            "local t = redis.call('TIME') "
            "redis.call('HSET', KEYS[2], 'rps', ARGV[1], 'burst', 1, 'window', 1) "
            "redis.call('HSET', KEYS[1], 'tokens', 0, 'refreshed', t[1]) "
            "return tonumber(t[1])",
            2,
            f"throttle:{name}",
            f"throttle:{name}:knobs",
            rps,
        )
    )


def test_a_mixed_fleet_on_one_bucket_stays_within_the_budget_and_uses_it(server):
    name = "fleet"
    r = server.redis()
    r.hset(f"throttle:{name}:knobs", mapping={"rps": 0, "burst": 1, "window": 1})
    modes = ["binding", "leased", "compat", "limitlion"]
    workers = {
        m: subprocess.Popen([sys.executable, WORKER, server.url, name, m], stdout=subprocess.PIPE, text=True)
        for m in modes
    }
    deadline = time.monotonic() + 30
    while not all(r.exists(f"started:{m}") for m in modes):
        assert time.monotonic() < deadline, "workers never started"
        assert all(w.poll() is None for w in workers.values())
        time.sleep(0.01)
    anchor = anchor_empty(server, name, RPS)
    # The Rust worker joins now and prints its count when its 2.5 s are up, before the stop.
    rust = subprocess.run(
        [loadgen(), "--redis", server.url, "--throttle", name, "--concurrency", "4", "--seconds", "2.5"],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        timeout=60,
    )
    server.wait_time(anchor + 3.3)
    r.set("stop", 1)
    reports = {m: json.loads(w.communicate(timeout=30)[0]) for m, w in workers.items()}
    reports["rust"] = json.loads(rust.stdout.strip().splitlines()[-1])
    windows = round(float(r.hget(f"throttle:{name}", "refreshed")) - anchor)
    assert windows >= 3
    budget = windows * RPS
    total = sum(rep["allowed"] for rep in reports.values())
    assert total <= budget, (reports, budget)
    assert total >= 0.97 * budget, (reports, budget)
    for m, rep in reports.items():
        assert rep["allowed"] > 0, f"{m} got nothing: {reports}"
    assert float(r.hget(f"throttle:{name}", "tokens")) >= 0

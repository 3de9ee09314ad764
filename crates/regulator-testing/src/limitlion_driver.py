"""Drives the real limitlion from PyPI for regulator's interop tests.

Reads one JSON request per line on stdin, writes one JSON reply per line on stdout.
"""

import json
import sys
import time

import limitlion
import redis


def handle(req, state):
    op = req["op"]
    if op == "configure":
        state["redis"] = redis.Redis.from_url(req["url"])
        limitlion.throttle_configure(state["redis"], testing=req.get("testing", False))
        return {"ok": True}
    if op == "throttle":
        allowed, tokens, sleep = limitlion.throttle(
            req["name"], req["rps"], req.get("burst", 1), req.get("window", 5),
            requested_tokens=req.get("requested", 1),
            knobs_ttl=req.get("knobs_ttl", 604800),
        )
        return {"allowed": allowed, "tokens": tokens, "sleep": sleep}
    if op == "set":
        limitlion.throttle_set(
            req["name"], rps=req.get("rps"), burst=req.get("burst"),
            window=req.get("window"), knobs_ttl=req.get("knobs_ttl"),
        )
        return {"ok": True}
    if op == "get":
        values = limitlion.throttle_get(req["name"])
        return {"values": [v.decode() if isinstance(v, bytes) else v for v in values]}
    if op == "reset":
        limitlion.throttle_reset(req["name"])
        return {"ok": True}
    if op == "delete":
        limitlion.throttle_delete(req["name"])
        return {"ok": True}
    if op == "run":
        # A worker: consume until `stop_key` exists in Redis, counting what was allowed.
        allowed = calls = 0
        r = state["redis"]
        if req.get("started_key"):
            r.set(req["started_key"], 1)
        while not r.exists(req["stop_key"]):
            ok, _, _ = limitlion.throttle(
                req["name"], req["rps"], req.get("burst", 1), req.get("window", 5))
            calls += 1
            allowed += int(ok)
            if not ok:
                time.sleep(req.get("idle", 0.001))
        return {"allowed": allowed, "calls": calls}
    raise ValueError("unknown op %r" % op)


def main():
    state = {}
    for line in sys.stdin:
        req = json.loads(line)
        try:
            reply = handle(req, state)
        except Exception as e:  # reported to the Rust test, which decides
            reply = {"error": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

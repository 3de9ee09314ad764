"""Fixtures: a real redis-server per test, on a free loopback port. A missing binary is a
failure with the command that installs it, never a skip."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary(name: str, install: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: run `make deps` ({install})", pytrace=False)
    return path


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def redis(self) -> redis.Redis:
        return redis.Redis(port=self.port)

    def time(self) -> float:
        seconds, micros = self.redis().time()
        return seconds + micros / 1e6

    def wait_time(self, at: float) -> None:
        """Waits on Redis's own clock (the buckets' clock) until `at`."""
        while self.time() < at:
            time.sleep(0.002)


def start_redis(tmp: Path, *args: str) -> RedisServer:
    exe = binary("redis-server", "apt-get install -y redis-server")
    port = free_port()
    process = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer(port, process)
    deadline = time.monotonic() + 10
    while True:
        try:
            server.redis().ping()
            return server
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"redis-server on port {port} did not start", pytrace=False)
            time.sleep(0.01)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    s = start_redis(tmp_path)
    yield s
    s.process.terminate()
    s.process.wait(10)


@pytest.fixture
def dead_url() -> str:
    """A loopback port where nothing listens."""
    return f"redis://127.0.0.1:{free_port()}/0"


def loadgen() -> str:
    """The Rust load generator (`cargo build --example loadgen`, done by `make python`)."""
    path = ROOT / "target" / "debug" / "examples" / "loadgen"
    if not path.exists():
        pytest.fail(f"{path} missing: run `make python`", pytrace=False)
    return str(path)



def allowed_in_threads(bucket: Any, threads: int, each: int) -> int:
    """Runs `threads` threads each calling `bucket.consume()` `each` times; the allowed total."""
    allowed: List[int] = []
    lock = threading.Lock()

    def work() -> None:
        mine = sum(bucket.consume().allowed for _ in range(each))
        with lock:
            allowed.append(mine)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert len(allowed) == threads, "a thread died"
    return sum(allowed)


class Counter:
    """A thread counting as fast as it can while the `with` block runs: it counts only while
    it holds the GIL, so `counted` shows whether the block let other threads run."""

    def __init__(self) -> None:
        self.counted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._count)

    def _count(self) -> None:
        while not self._stop.is_set():
            self.counted += 1

    def __enter__(self) -> "Counter":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

"""Servers for the seed libraries' suites, whose addresses are module constants: a standalone
redis-server and a 3-master Redis Cluster, each started on first use (free loopback ports) and
stopped when the test process exits."""

from __future__ import annotations

import atexit
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import pytest
import redis

from conftest import binary, start_redis

_standalone: Optional[str] = None
_cluster: Optional[str] = None
_processes: List[subprocess.Popen] = []


def _stop() -> None:
    for p in _processes:
        p.terminate()
    for p in _processes:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


atexit.register(_stop)


def standalone_url() -> str:
    global _standalone
    if _standalone is None:
        server = start_redis(Path(tempfile.mkdtemp(prefix="seed-redis-")))
        _processes.append(server.process)
        _standalone = server.url
    return _standalone


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    pytest.fail("no free port pair for a cluster node", pytrace=False)


def cluster_url() -> str:
    global _cluster
    if _cluster is not None:
        return _cluster
    exe = binary("redis-server", "apt-get install -y redis-server")
    cli = binary("redis-cli", "apt-get install -y redis-tools")
    ports = []
    for _ in range(3):
        port = _cluster_port()
        d = Path(tempfile.mkdtemp(prefix="seed-cluster-"))
        _processes.append(
            subprocess.Popen(
                [exe, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", str(d / "nodes.conf"), "--save", "", "--appendonly", "no",
                 "--dir", str(d)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        ports.append(port)
    deadline = time.monotonic() + 10
    for port in ports:
        while True:
            try:
                redis.Redis(port=port).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail(f"cluster node {port} did not start", pytrace=False)
                time.sleep(0.01)
    subprocess.run(
        [cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "0", "--cluster-yes"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    for port in ports:
        while redis.Redis(port=port).cluster("info").get("cluster_state") != "ok":
            if time.monotonic() > deadline:
                pytest.fail("the cluster never became ok", pytrace=False)
            time.sleep(0.05)
    _cluster = f"redis://127.0.0.1:{ports[0]}"
    return _cluster

"""limitlion's tests connect to REDIS_PORT, read when their module is imported: here, a
redis-server of their own, started when this conftest is loaded, on a free port, and stopped
after their module. Their first test expects a process where throttle_configure was never
called: the adapter is reset before the module."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from conftest import start_redis
from regulator.compat import limitlion as adapter

_server = start_redis(Path(tempfile.mkdtemp(prefix="limitlion-")))
os.environ["REGULATOR_TEST_REDIS_PORT"] = str(_server.port)


@pytest.fixture(scope="module", autouse=True)
def limitlion_server() -> Iterator[None]:
    adapter._client = None
    adapter._redis = None
    yield
    _server.process.terminate()
    _server.process.wait(10)

"""The seed libraries' own suites, run against regulator's adapters. A test of a seed's
implementation rather than its behaviour cannot pass on any other implementation: each such
test is listed here with the reason, and skipped, never silently.

limiters' suite was written for a pytest-asyncio that left a current event loop behind, which
one of its synchronous tests uses (`asyncio.get_event_loop()`); today's does not, and that
test fails on limiters itself as on the adapter. Each synchronous test gets a current event
loop, as it had there."""

from __future__ import annotations

import asyncio
import inspect
from typing import Iterator, List

import pytest

NOT_BEHAVIOUR = {
    "test_redis_instructions": (
        "asserts the exact Redis commands limiters' own scripts issue (EVALSHA, SETNX, BLPOP, "
        "MULTI/EXPIRE/EXEC, LPUSH) as MONITOR shows them: an adapter on regulator's scripts "
        "issues others (and with redis-py 8.1 it times out on limiters itself)"
    ),
}


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    for item in items:
        reason = NOT_BEHAVIOUR.get(getattr(item, "originalname", item.name))
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def current_event_loop(request: pytest.FixtureRequest) -> Iterator[None]:
    if inspect.iscoroutinefunction(getattr(request, "function", None)):
        yield
        return
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()

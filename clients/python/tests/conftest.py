import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from server import Server  # noqa: E402


def run(coro, timeout: float = 60):
    """Runs a test coroutine with a bound: no test can hang the suite."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture(scope="session")
def server():
    """One server for the tests that do not stop it."""
    s = Server(token_ttl_s=3).start()
    yield s
    s.stop()


@pytest.fixture
def own_server():
    """A server of the test's own, which it may kill and restart."""
    s = Server().start()
    yield s
    s.stop()

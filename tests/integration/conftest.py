"""Integration tests run against the real services of ``init/devstack``. A missing service is
a FAILURE, never a skip: an integration test that did not run proved nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from harness import SERVICES, RoleProcess, TestEnv, _shared_lock, port_open


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack() -> None:
    down = [f"{name} ({h}:{p})" for name, (h, p) in SERVICES.items() if not port_open(h, p)]
    if down:
        pytest.fail(f"services not answering: {', '.join(down)}; start them with `init/devstack up`",
                    pytrace=False)


@pytest.fixture
def env(stack: None, tmp_path: Path) -> TestEnv:
    return TestEnv(tmp_path)


@pytest.fixture
def processes() -> Iterator[list[RoleProcess]]:
    """Collects the processes a test starts and kills whatever is left at the end."""
    started: list[RoleProcess] = []
    yield started
    for p in started:
        p.close()


@pytest.fixture(autouse=True)
def _services_shared() -> Iterator[None]:
    """Hold the services lock shared for the test (see harness.ServiceFault)."""
    _shared_lock.acquire()
    yield
    _shared_lock.release()

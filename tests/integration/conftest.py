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
def env(stack: None, tmp_path: Path) -> Iterator[TestEnv]:
    test_env = TestEnv(tmp_path)
    yield test_env
    _delete_topics(test_env.prefix)


def _delete_topics(prefix: str) -> None:
    """Remove the test's topics: thousands of leftover topics slow the shared broker down."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError
    try:
        admin = KafkaAdminClient(bootstrap_servers="127.0.0.1:9092", request_timeout_ms=10_000)
    except KafkaError:
        return
    try:
        mine = [t for t in admin.list_topics() if t.startswith(prefix)]
        if mine:
            admin.delete_topics(mine)
    except KafkaError:
        pass   # the broker may be down after a fault test; leftovers only cost space
    finally:
        admin.close()


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

"""The role's main thread: a destination that ends stops them all, and its error decides the
exit — a table's fault or too much invalid input cannot be fixed by restarting (exit 3)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from eventd.errors import CannotStart, EventdError, ServiceUnavailable
from eventd.kafka.consumer import ConsumerStuck
from eventd.kafka.consumer_loop import FatalSinkError
from eventd.kafka.deadletter import TooManyInvalid
from eventd.roles.clickhouse_loader import _raise_first_error, _supervise


class FakeThread:
    def __init__(self, name: str, alive: bool = True, error: BaseException | None = None) -> None:
        self.dest = SimpleNamespace(name=name)
        self._alive, self.error = alive, error

    def is_alive(self) -> bool:
        return self._alive


def test_supervision_returns_when_a_destination_ends_or_on_stop() -> None:
    stop = threading.Event()
    started = time.monotonic()
    _supervise([FakeThread("a"), FakeThread("b", alive=False)], stop)  # type: ignore[list-item]
    assert time.monotonic() - started < 2 and not stop.is_set()
    threading.Timer(0.2, stop.set).start()
    _supervise([FakeThread("a")], stop)  # type: ignore[list-item]
    assert stop.is_set()


@pytest.mark.parametrize("error,kind,exit_3", [
    (FatalSinkError("no such column referrer"), CannotStart, True),
    (TooManyInvalid("60 of the last 100 messages were invalid"), CannotStart, True),
    (RuntimeError("a bug"), EventdError, False),
    # An outage stays one (found by the fault suite: a commit stuck after a slow Kafka restart was
    # logged as "role failed" with a traceback): the role exits to be restarted, logged as such.
    (ConsumerStuck("a commit has waited for the Kafka group coordinator for 60s"), ServiceUnavailable, False),
])
def test_the_error_of_a_destination_decides_the_exit(error: BaseException, kind: type, exit_3: bool) -> None:
    threads: list[Any] = [FakeThread("good"), FakeThread("prod", alive=False, error=error)]
    with pytest.raises(kind) as exc:
        _raise_first_error(threads)
    assert str(exc.value).startswith("destination prod") and str(error) in str(exc.value)
    assert isinstance(exc.value, CannotStart) == exit_3
    assert isinstance(exc.value, ServiceUnavailable) == isinstance(error, ServiceUnavailable)


def test_destinations_that_stopped_cleanly_raise_nothing() -> None:
    _raise_first_error([FakeThread("a", alive=False), FakeThread("b", alive=False)])  # type: ignore[list-item]

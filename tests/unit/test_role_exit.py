"""How a role process ends: exit codes, and one log line — no traceback — for an outage."""

from __future__ import annotations

import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest
import confluent_kafka

import eventd.roles
from eventd.config import load_config
from eventd.errors import EXIT_CANNOT_START, EXIT_OK, EXIT_TEMPORARY, CannotStart, ServiceUnavailable
from eventd.kafka.types import from_client
from eventd.roles.base import run_role

SAMPLE = Path(__file__).resolve().parents[2] / "conf" / "eventd.yaml"


@pytest.fixture
def config() -> Iterator[object]:
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield load_config(str(SAMPLE))
    for s, h in handlers.items():      # run_role installs its own
        signal.signal(s, h)


def run_with(monkeypatch: pytest.MonkeyPatch, config: object, error: BaseException | None) -> int:
    def main(ctx: object) -> None:
        if error is not None:
            raise error
    monkeypatch.setattr(eventd.roles, "role_module", lambda name: SimpleNamespace(main=main))
    monkeypatch.setattr("eventd.metrics.serve", lambda host, port: None)
    return run_role(config, "collector")  # type: ignore[arg-type]


# What librdkafka reports with the broker down: its own retriable() flag is False for it.
BROKER_DOWN = from_client(confluent_kafka.KafkaException(confluent_kafka.KafkaError(
    confluent_kafka.KafkaError._TRANSPORT, "Connection refused")))


@pytest.mark.parametrize("error", [BROKER_DOWN,
                                   ServiceUnavailable("dead letters not acknowledged")])
def test_an_outage_exits_temporary_with_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                                 config: object, error: Exception) -> None:
    assert run_with(monkeypatch, config, error) == EXIT_TEMPORARY
    err = capsys.readouterr().err
    assert f"stopping, to be restarted: {type(error).__name__}" in err and "Traceback" not in err


def test_a_bug_exits_temporary_with_its_traceback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                                   config: object) -> None:
    assert run_with(monkeypatch, config, ValueError("a bug")) == EXIT_TEMPORARY
    err = capsys.readouterr().err
    assert "role failed" in err and "Traceback" in err and "ValueError: a bug" in err


def test_cannot_start_and_a_clean_stop(monkeypatch: pytest.MonkeyPatch, config: object) -> None:
    assert run_with(monkeypatch, config, CannotStart("wrong password")) == EXIT_CANNOT_START
    assert run_with(monkeypatch, config, None) == EXIT_OK

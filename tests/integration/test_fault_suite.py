"""The fault-injection suite, short version (CI): a few cycles of each scenario against the whole
pipeline (``eventd run`` with every role, the real services). Every invariant of
:mod:`faults.invariants` must hold; the long version is ``tests/faults/run``.

The seed of each scenario is fixed so a CI failure replays with
``tests/faults/run --scenario NAME --seed SEED --cycles CYCLES``; EVENTD_FAULT_SEED overrides it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from faults import runner

SHORT = {   # scenario → cycles
    "kill-roles": 3,
    "zombie-consumer": 1,
    "kafka-restart": 1,
    "clickhouse-zookeeper": 2,
    "mariadb-kill": 1,
    "hdfs": 2,
    "queue-full": 1,
    "proxy": 3,
    "bad-input": 2,
}
SEED = int(os.environ.get("EVENTD_FAULT_SEED", "20261127"))


@pytest.mark.parametrize("name", list(SHORT))
def test_scenario_keeps_every_invariant(name: str, stack: None, tmp_path: Path) -> None:
    lines: list[str] = []
    row = runner.run(runner.scenario(name), tmp_path, SEED, SHORT[name], rate=200, log=lines.append)
    print(runner.table([row]))
    print("\n".join(lines + row.notes))
    assert row.ok, (f"{name} (replay: tests/faults/run --scenario {name} --seed {SEED} --cycles {SHORT[name]}):\n"
                    + "\n".join(row.problems()) + f"\nlogs: {tmp_path}")

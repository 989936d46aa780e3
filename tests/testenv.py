"""Run a repository script (bench/run, tests/faults/run) with the test environment's Python.

The scripts drive eventd's roles and check the sinks with the clients eventd and its tests depend
on (confluent-kafka, kafka-python, clickhouse-driver, PyMySQL …), which the machine's python3
does not have. `use_test_python` re-executes the running script with `.tox/py311/bin/python`,
creating that environment first (`init/testenv`) if it is missing."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

# eventd itself is always importable from the repository; its dependencies tell the environments apart.
NEEDED = ("confluent_kafka", "kafka", "clickhouse_driver", "pymysql")


def use_test_python(repo: Path) -> None:
    """Return if this interpreter can import every module in NEEDED; otherwise re-execute the
    running script, with the same arguments, under the test environment's Python. Never returns
    then: it exits with a clear message if even that Python lacks a module."""
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if not missing:
        return
    python = repo / ".tox" / "py311" / "bin" / "python"
    if Path(sys.executable).absolute() == python.absolute():
        raise SystemExit(f"{python} lacks {', '.join(missing)}: run init/testenv")
    if not python.exists():
        print(f"{sys.argv[0]}: this Python lacks {', '.join(missing)}; creating the test environment "
              f"(init/testenv)", file=sys.stderr)
        subprocess.run([str(repo / "init" / "testenv")], check=True)
    os.execv(python, [str(python), *sys.argv])

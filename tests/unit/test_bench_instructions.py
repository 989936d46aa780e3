"""bench/instructions.py's workloads, without valgrind (which the test command does not install):
each path must still run against the current code, so the instruction counts cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from bench.instructions import PATHS  # noqa: E402


@pytest.mark.parametrize("path", PATHS)
def test_every_path_runs_on_this_checkout(path: str) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "instructions.py"), "--inner", str(REPO), path,
                           "60", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

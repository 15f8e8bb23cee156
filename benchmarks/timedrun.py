"""One `harness ...` subprocess of a benchmark: its exit status and wall seconds."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed_harness(args: list[str], log: Path, env: dict | None = None) -> tuple[int, float]:
    """Run the harness CLI with its output into ``log``; the clock covers the whole process."""
    started = time.monotonic()
    with log.open("w") as sink:
        code = subprocess.run(
            [sys.executable, "-m", "harness.cli", *args],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        ).returncode
    return code, round(time.monotonic() - started, 1)

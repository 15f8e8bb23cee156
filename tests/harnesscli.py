"""The harness CLI as the boot tests run it: a subprocess, its output streamed to the log."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def harness(*args: str, env: dict | None = None) -> tuple[int, str]:
    """Exit status and output of `harness ARGS` (output also shown as it comes)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    lines = []
    for line in proc.stdout:
        sys.__stderr__.write(line)
        lines.append(line)
    return proc.wait(timeout=3600), "".join(lines)

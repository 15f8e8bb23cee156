"""The harness CLI as the tests use it: run as a subprocess (boot tests), or parsed only."""

import os
import subprocess
import sys
from pathlib import Path

import click

from harness.cli import main

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


def parse(argv: list[str]) -> click.Context:
    """Parse ``harness ARGV`` as the CLI would, without running anything: an unknown
    command or option, or a bad value, fails."""
    command = main.get_command(click.Context(main), argv[0])
    assert command is not None, f"harness has no command {argv[0]!r}"
    return command.make_context(argv[0], list(argv[1:]))

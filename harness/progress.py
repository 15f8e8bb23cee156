"""Progress output for long stages (unpack, build, boot, scenario steps).

Everything goes to stderr so stdout stays parseable (``harness log --json``).
"""

from __future__ import annotations

import sys
import time

_START = time.monotonic()


def elapsed() -> str:
    seconds = int(time.monotonic() - _START)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def say(message: str) -> None:
    print(f"[{elapsed()}] {message}", file=sys.stderr, flush=True)


class Ticker:
    """Rate-limited status line: rewritten in place on a terminal, a line every
    ``every`` seconds otherwise (CI logs stay short)."""

    def __init__(self, every: float = 30.0):
        self.tty = sys.stderr.isatty()
        self.every = 1.0 if self.tty else every
        self.last = 0.0

    def update(self, message: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        if self.tty:
            print(f"\r\033[K[{elapsed()}] {message}", end="", file=sys.stderr, flush=True)
        else:
            say(message)

    def done(self, message: str) -> None:
        if self.tty:
            print("\r\033[K", end="", file=sys.stderr)
        say(message)

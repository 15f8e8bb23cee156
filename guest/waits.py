"""Waiting for the kernel to get somewhere: one bounded poll for runner, fixtures and adapters.

Its own module so that the runner imports it without the USB gadget stack.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(value: Callable[[], T], timeout: float, interval: float = 0.02) -> T | None:
    """``value()`` as soon as it is truthy, asked every ``interval`` s; None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = value()
        if result:
            return result
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)

"""A stand-in for gadget.FfsGadget whose two endpoints are pipes, for emulator-thread tests.

The emulator under test reads its OUT endpoint and writes its IN endpoint as
it would on FunctionFS; the test plays the USB host on the other pipe ends.
plug/unplug only record the call.
"""

from __future__ import annotations

import fcntl
import os
import select
import threading
import time
from collections import Counter
from collections.abc import Callable

from guest.adapters.gadget import Endpoint, interrupt


class PipeGadget:
    def __init__(self, out_index: int = 0, buffer_size: int = 4096):
        out_r, self.host_w = os.pipe()
        self.host_r, in_w = os.pipe()
        out_ep, in_ep = Endpoint(out_r, buffer_size), Endpoint(in_w, buffer_size)
        self.endpoints = [out_ep, in_ep] if out_index == 0 else [in_ep, out_ep]
        self.in_fd = in_w
        self.events: Counter[str] = Counter()
        self.calls: list[str] = []
        self.plugged = False

    def create(self, read_buffer: int = 4096) -> None:
        self.calls.append(f"create {read_buffer}")

    def plug(self, wait: bool = True, timeout: float = 10.0) -> None:
        self.calls.append("plug")
        self.plugged = True

    def unplug(self) -> bool:
        self.calls.append("unplug")
        was, self.plugged = self.plugged, False
        return was

    def speed(self) -> str:
        return "high-speed"

    def destroy(self) -> list[str]:
        self.calls.append("destroy")
        for endpoint in self.endpoints:
            endpoint.close()
        os.close(self.host_w)
        os.close(self.host_r)
        return []

    def send(self, data: bytes) -> None:
        os.write(self.host_w, data)

    def receive(self, size: int, timeout: float = 5.0) -> bytes:
        """What the emulator wrote; a reply that never comes fails the test, not hangs it."""
        ready, _, _ = select.select([self.host_r], [], [], timeout)
        if not ready:
            raise TimeoutError(f"no reply from the emulator within {timeout:g} s")
        return os.read(self.host_r, size)

    def jam_in_endpoint(self) -> None:
        """Fill the IN pipe so the emulator's next reply blocks, like a write after an unplug."""
        fcntl.fcntl(self.in_fd, fcntl.F_SETPIPE_SZ, 4096)
        os.set_blocking(self.in_fd, False)
        try:
            while True:
                os.write(self.in_fd, b"\0" * 4096)
        except BlockingIOError:
            pass
        os.set_blocking(self.in_fd, True)


def interrupt_until(
    thread: threading.Thread, done: Callable[[], bool], timeout: float = 5.0
) -> bool:
    """Signal ``thread`` until ``done()``: a signal that lands before its read begins is lost."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        interrupt(thread)
        time.sleep(0.005)
    return True

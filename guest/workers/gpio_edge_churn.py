"""gpio-edge-churn: request a line with edge detection, take what events come, release it.

Every op is a fresh request: open the chip, request the lines for both edges
(every other op debounced, so gpiolib's debounce work runs too), wait a
moment for an event, read it, close. With the scenario toggling the lines,
requests are released while an edge is being delivered (the interrupt
thread, a debounce work item armed by the last edge): what a consumer that
comes and goes (a daemon restarting, a tool polling a button) does, and what
the teardown of a line request must drain.
"""

from __future__ import annotations

import errno

from guest import gpiocdev
from guest.workers.base import Handle, ThreadState
from guest.workers.gpio_lines import LineRequestWorker

DEBOUNCE_US = 1000  # a button's: shorter than the scenario's toggle interval
WAIT_S = 0.02  # for an edge before releasing: long enough to see one, short enough to churn


class GpioEdgeChurn(LineRequestWorker):
    edges = True
    fixture_types = ("gpio-sim",)

    def persistent(self) -> bool:
        return False

    def op(
        self, handle: Handle | None, lines: list[int], buf: bytearray, state: ThreadState
    ) -> int:
        request = self.request(lines, debounce_us=DEBOUNCE_US if state.ops % 2 else 0)
        try:
            gpiocdev.read_events(request.fd, WAIT_S)
        finally:
            if problems := request.close():  # a failed release is an errno like any other
                code = getattr(errno, problems[0], errno.EIO)
                raise OSError(code, f"close of the line request: {problems[0]}")
        return 1


WORKER = GpioEdgeChurn

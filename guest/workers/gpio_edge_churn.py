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

import os
import select

from guest import gpiocdev
from guest.workers.base import Handle, ThreadState, Worker

DEBOUNCE_US = 1000  # a button's: shorter than the scenario's toggle interval
WAIT_S = 0.02  # for an edge before releasing: long enough to see one, short enough to churn


class GpioEdgeChurn(Worker):
    needs_fixture = True
    splits_lines = True  # a line is requested by one thread at a time
    fixture_types = ("gpio-sim",)

    def persistent(self) -> bool:
        return False

    def op(
        self, handle: Handle | None, lines: list[int], buf: bytearray, state: ThreadState
    ) -> int:
        chip_fd = os.open(self._chip_path(), os.O_RDONLY)
        try:
            debounce = DEBOUNCE_US if state.ops % 2 else 0
            line_fd = gpiocdev.request_lines(
                chip_fd, lines, edges=True, consumer=f"harness-{self.name}", debounce_us=debounce
            )
            try:
                ready, _, _ = select.select([line_fd], [], [], WAIT_S)
                if ready:
                    os.read(line_fd, gpiocdev.LINE_EVENT_SIZE * 16)
            finally:
                os.close(line_fd)
        finally:
            os.close(chip_fd)
        return 1


WORKER = GpioEdgeChurn

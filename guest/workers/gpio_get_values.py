"""gpio-get-values: GPIO_V2_LINE_GET_VALUES_IOCTL on a line request, over and over."""

from __future__ import annotations

from guest import gpiocdev
from guest.workers.base import Handle, ThreadState
from guest.workers.gpio_lines import LineRequestWorker


class GpioGetValues(LineRequestWorker):
    def op(
        self, handle: Handle | None, lines: list[int], buf: bytearray, state: ThreadState
    ) -> int:
        gpiocdev.get_values(handle.fd, len(lines))
        return 1


WORKER = GpioGetValues

"""gpio-chip-info: GPIO_GET_CHIPINFO_IOCTL on an open chip fd (threads may share it)."""

from __future__ import annotations

import os

from guest import gpiocdev
from guest.workers.base import Handle, ThreadState, Worker


class GpioChipInfo(Worker):
    needs_fixture = True

    def open_handle(self, lines: list[int]) -> Handle:
        return Handle(os.open(self._chip_path(), os.O_RDONLY))

    def op(
        self, handle: Handle | None, lines: list[int], buf: bytearray, state: ThreadState
    ) -> int:
        gpiocdev.chip_info(handle.fd)
        return 1


WORKER = GpioChipInfo

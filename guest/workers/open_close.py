"""open-close: open the chip (or a device file), one call, close: every op a fresh fd."""

from __future__ import annotations

import os

from guest import gpiocdev
from guest.workers.base import Handle, ThreadState, Worker


class OpenClose(Worker):
    path_or_fixture = True  # a device file, or the fixture's chip

    def persistent(self) -> bool:
        return False

    def op(
        self, handle: Handle | None, lines: list[int], buf: bytearray, state: ThreadState
    ) -> int:
        fd = os.open(self._chip_path(), os.O_RDONLY)
        try:
            if self.fixture is not None:
                gpiocdev.chip_info(fd)
            else:
                os.read(fd, 64)
        finally:
            os.close(fd)
        return 1


WORKER = OpenClose

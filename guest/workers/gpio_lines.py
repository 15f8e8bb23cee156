"""What the two line-request worker types share: a line request on the chip."""

from __future__ import annotations

import os

from guest import gpiocdev
from guest.workers.base import Handle, Worker


class LineRequestWorker(Worker):
    needs_fixture = True
    splits_lines = True
    edges = False  # request edge events with the lines

    def open_handle(self, lines: list[int]) -> Handle:
        return self.request(lines)

    def request(self, lines: list[int], debounce_us: int = 0) -> Handle:
        """Open the chip and request ``lines``; the handle holds both fds."""
        chip_fd = os.open(self._chip_path(), os.O_RDONLY)
        try:
            line_fd = gpiocdev.request_lines(
                chip_fd,
                lines,
                edges=self.edges,
                consumer=f"harness-{self.name}",
                debounce_us=debounce_us,
            )
        except OSError:
            os.close(chip_fd)
            raise
        return Handle(line_fd, chip_fd)

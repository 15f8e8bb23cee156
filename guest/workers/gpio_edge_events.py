"""gpio-edge-events: a line request with edge detection, reading the events it delivers."""

from __future__ import annotations

from guest import gpiocdev
from guest.workers.base import Handle, ThreadState
from guest.workers.gpio_lines import LineRequestWorker


class GpioEdgeEvents(LineRequestWorker):
    edges = True
    paced = False  # its events come with the scenario's pull toggles

    def op(
        self, handle: Handle | None, lines: list[int], buf: bytearray, state: ThreadState
    ) -> int:
        return self._edge_events(handle)

    def _edge_events(self, handle: Handle) -> int:
        """Wait up to 0.2 s for edge events and read them: the number delivered, so min_ops
        and the mid-read proof of an edge waiter are met by real edges only."""
        return gpiocdev.read_events(handle.fd, 0.2)


WORKER = GpioEdgeEvents

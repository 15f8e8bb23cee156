"""read-file: read a device file sequentially (held fd) or whole (open, read to EOF,
close), every byte checked against the chip model with ``verify``."""

from __future__ import annotations

import os
import time

from guest.workers.base import Handle, ShortFile, Stopped, ThreadState, Worker

# read-file asks for block_size bytes per read() (default 128 KiB, what `cat` asks):
# mtdchar passes the whole request down in one mtd_read(); sysfs serves at most a page.


class ReadFile(Worker):
    needs_path = True
    reads_in_blocks = True

    def open_handle(self, lines: list[int]) -> Handle:
        return Handle(os.open(self._file_path(), os.O_RDONLY))

    def persistent(self) -> bool:
        return self.spec.hold

    def buffer_size(self) -> int:
        return self.spec.block_size

    def op(
        self, handle: Handle | None, lines: list[int], buf: bytearray, state: ThreadState
    ) -> int:
        self._read_file(handle, buf, state)
        return 1

    def _read_file(self, handle: Handle | None, buf: bytearray, state: ThreadState) -> None:
        """One chunk of a long sequential read (wrapping at EOF), checked against the model.

        A held fd reads on from where the thread stopped, so a removal lands in
        the middle of a long read; without ``hold`` every op is open/read/close,
        and with ``whole_file`` it reads to EOF in between, like ``cat``.
        """
        if handle is not None:
            with self._reading():
                n = os.preadv(handle.fd, [buf], state.offset)
                self._check(buf, state.offset, n, state)
            state.offset = 0 if n == 0 else state.offset + n
            return
        started = time.monotonic()
        fd = os.open(self._file_path(), os.O_RDONLY)
        try:
            offset = 0
            while True:
                with self._reading():
                    n = os.readv(fd, [buf])
                    self._check(buf, offset, n, state)
                offset += n
                if not n or not self.spec.whole_file:
                    break
                if self.stop_event.is_set():  # a slow whole-file read is not a blocked one
                    raise Stopped
        finally:
            os.close(fd)
        if self.spec.whole_file and offset != self.fixture.size():
            with self.lock:
                self.short.append((started, time.monotonic(), offset, self.fixture.size()))
            raise ShortFile


WORKER = ReadFile

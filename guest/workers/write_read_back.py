"""write-read-back: write a random block, read it back, and check the chip model got it too."""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from guest.workers.base import Handle, ThreadState, Worker

WRITE_BLOCK = 64  # bytes per write-read-back op on an EEPROM
FLASH_WRITE_BLOCK = 256  # one SPI-NOR page, at the start of a freshly erased block
MEMERASE = 0x40084D02  # _IOW('M', 2, struct erase_info_user {u32 start, length}), mtd-abi.h


class WriteReadBack(Worker):
    needs_fixture = True
    needs_path = True
    needs_chip_model = True
    writes_fixture = True

    def open_handle(self, lines: list[int]) -> Handle:
        return Handle(os.open(self._file_path(), os.O_RDWR))

    def op(
        self, handle: Handle | None, lines: list[int], buf: bytearray, state: ThreadState
    ) -> int:
        self._write_read_back(handle, state)
        return 1

    def _write_read_back(self, handle: Handle, state: ThreadState) -> None:
        """Write a random block, read it back, and check the chip model got it too.

        On an MTD device the block is a page at the start of an erase block,
        erased first (NOR only clears bits when programmed).
        """
        fixture, rng = self.fixture, state.rng
        erase = fixture.erase_size()
        block = FLASH_WRITE_BLOCK if erase else WRITE_BLOCK
        unit = erase or block
        offset = rng.randrange(fixture.size() // unit) * unit
        data = rng.randbytes(block)
        with fixture.io_lock.held():
            if erase:
                fcntl.ioctl(handle.fd, MEMERASE, struct.pack("<II", offset, erase))
            written = os.pwrite(handle.fd, data, offset)
            if written != block:
                raise OSError(errno.EIO, f"short write: {written} of {block} bytes at {offset}")
            back = os.pread(handle.fd, block, offset)
            model = fixture.expected(offset, block)
        state.bytes += block
        self._compare(data, back, offset, "read back differs from what was written")
        self._compare(data, model, offset, "the chip model differs from what was written")
        state.verified += block


WORKER = WriteReadBack

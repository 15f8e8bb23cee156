"""rtc-read-time: RTC_RD_TIME on an open /dev/rtcN (threads may share the fd): each op is
one rtc_read_time(), which reads the chip's time registers through its bus."""

from __future__ import annotations

import fcntl
import os

from guest.workers.base import Handle, ThreadState, Worker

RTC_RD_TIME = 0x80247009  # _IOR('p', 0x09, struct rtc_time): nine ints, include/uapi/linux/rtc.h
RTC_TIME_SIZE = 36


class RtcReadTime(Worker):
    needs_path = True

    def open_handle(self, lines: list[int]) -> Handle:
        return Handle(os.open(self._file_path(), os.O_RDONLY))

    def op(
        self, handle: Handle | None, lines: list[int], buf: bytearray, state: ThreadState
    ) -> int:
        fcntl.ioctl(handle.fd, RTC_RD_TIME, bytearray(RTC_TIME_SIZE))
        state.bytes += RTC_TIME_SIZE
        return 1


WORKER = RtcReadTime

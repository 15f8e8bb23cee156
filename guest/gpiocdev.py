"""GPIO character device uAPI (v2): what workers and the gpio fixtures call.

Struct layouts and ioctl numbers follow include/uapi/linux/gpio.h (sizes checked
against the C headers: line_request 592, line_config 272, line_values 16,
line_event 48, chip_info 68 bytes). Standard library only: this runs in the guest.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import select
from pathlib import Path

GPIO_V2_LINES_MAX = 64
GPIO_V2_LINE_NUM_ATTRS_MAX = 10

FLAG_INPUT = 1 << 2
FLAG_EDGE_RISING = 1 << 4
FLAG_EDGE_FALLING = 1 << 5
ATTR_ID_DEBOUNCE = 3  # gpio_v2_line_attr_id: the value is debounce_period_us


def _iowr(nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (0xB4 << 8) | nr


def _ior(nr: int, size: int) -> int:
    return (2 << 30) | (size << 16) | (0xB4 << 8) | nr


class ChipInfo(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char * 32),
        ("label", ctypes.c_char * 32),
        ("lines", ctypes.c_uint32),
    ]


class LineAttribute(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("padding", ctypes.c_uint32), ("value", ctypes.c_uint64)]


class LineConfigAttribute(ctypes.Structure):
    _fields_ = [("attr", LineAttribute), ("mask", ctypes.c_uint64)]


class LineConfig(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("num_attrs", ctypes.c_uint32),
        ("padding", ctypes.c_uint32 * 5),
        ("attrs", LineConfigAttribute * GPIO_V2_LINE_NUM_ATTRS_MAX),
    ]


class LineRequest(ctypes.Structure):
    _fields_ = [
        ("offsets", ctypes.c_uint32 * GPIO_V2_LINES_MAX),
        ("consumer", ctypes.c_char * 32),
        ("config", LineConfig),
        ("num_lines", ctypes.c_uint32),
        ("event_buffer_size", ctypes.c_uint32),
        ("padding", ctypes.c_uint32 * 5),
        ("fd", ctypes.c_int32),
    ]


class LineInfo(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char * 32),
        ("consumer", ctypes.c_char * 32),
        ("offset", ctypes.c_uint32),
        ("num_attrs", ctypes.c_uint32),
        ("flags", ctypes.c_uint64),
        ("attrs", LineAttribute * GPIO_V2_LINE_NUM_ATTRS_MAX),
        ("padding", ctypes.c_uint32 * 4),
    ]


class LineValues(ctypes.Structure):
    _fields_ = [("bits", ctypes.c_uint64), ("mask", ctypes.c_uint64)]


LINE_EVENT_SIZE = 48
GET_CHIPINFO = _ior(0x01, ctypes.sizeof(ChipInfo))
GET_LINE = _iowr(0x07, ctypes.sizeof(LineRequest))
LINE_GET_VALUES = _iowr(0x0E, ctypes.sizeof(LineValues))
GET_LINEINFO = _iowr(0x05, ctypes.sizeof(LineInfo))
FLAG_USED = 1 << 0

assert ctypes.sizeof(LineRequest) == 592 and ctypes.sizeof(LineConfig) == 272
assert ctypes.sizeof(LineInfo) == 256


def chip_info(fd: int) -> ChipInfo:
    info = ChipInfo()
    fcntl.ioctl(fd, GET_CHIPINFO, info)
    return info


def request_lines(
    chip_fd: int, offsets: list[int], edges: bool, consumer: str, debounce_us: int = 0
) -> int:
    """Request ``offsets`` as inputs (with both-edge detection if ``edges``, debounced by
    ``debounce_us``: gpiolib debounces in software, with a work item, where the chip
    cannot); return the line fd."""
    req = LineRequest()
    for i, offset in enumerate(offsets):
        req.offsets[i] = offset
    req.num_lines = len(offsets)
    req.consumer = consumer.encode()[:31]
    req.config.flags = FLAG_INPUT | ((FLAG_EDGE_RISING | FLAG_EDGE_FALLING) if edges else 0)
    if debounce_us:
        req.config.num_attrs = 1
        req.config.attrs[0].attr.id = ATTR_ID_DEBOUNCE
        req.config.attrs[0].attr.value = debounce_us
        req.config.attrs[0].mask = (1 << len(offsets)) - 1
    fcntl.ioctl(chip_fd, GET_LINE, req)
    return req.fd


def read_events(line_fd: int, wait_s: float) -> int:
    """Wait up to ``wait_s`` for edge events on a line request and read them: how many.
    A wait that timed out read nothing and counts as nothing."""
    ready, _, _ = select.select([line_fd], [], [], wait_s)
    if not ready:
        return 0
    return len(os.read(line_fd, LINE_EVENT_SIZE * 16)) // LINE_EVENT_SIZE


def line_consumer(label: str, line: int) -> str | None:
    """Who holds ``line`` of the chip labelled ``label`` (None: nobody, or no such chip)."""
    for node in sorted(Path("/dev").glob("gpiochip*")):
        fd = os.open(node, os.O_RDONLY)
        try:
            if chip_info(fd).label.decode() != label:
                continue
            info = LineInfo(offset=line)
            fcntl.ioctl(fd, GET_LINEINFO, info)
            return info.consumer.decode() if info.flags & FLAG_USED else None
        finally:
            os.close(fd)
    return None


def get_values(line_fd: int, count: int) -> int:
    values = LineValues(0, (1 << count) - 1)
    fcntl.ioctl(line_fd, LINE_GET_VALUES, values)
    return values.bits

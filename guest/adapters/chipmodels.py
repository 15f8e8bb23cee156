"""Device models behind emulated USB adapters: an I2C EEPROM, an I2C RTC, a SPI NOR flash.

Pure state machines, no I/O, so they can be driven byte-exactly by unit tests
and by the adapter emulators (dln2.py) alike. Both keep their content in a
bytearray and answer bulk transfers with slices, because the emulator thread
must reply within the host driver's 200 ms timeout even under TCG.

Anything a host does that a real chip would ignore or reject (a command while
busy, a program without write enable) still behaves the way the chip would,
and is also reported through ``report`` so the emulator can count it as an
anomaly. An opcode outside the part's instruction set is not an anomaly: the
chip ignores it, as the real one does, and the model only counts it.
"""

from __future__ import annotations

import datetime
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

PATTERNS = ("counter", "zero", "erased", "random")


def initial_content(pattern: str, size: int, seed: int = 0) -> bytes:
    """The content a model starts with; readers verify against the same call.

    counter: byte i = i & 0xff; zero: all 0x00; erased: all 0xff (a blank
    flash); random: ``random.Random(seed).randbytes(size)``.
    """
    if pattern == "counter":
        return bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    if pattern == "zero":
        return bytes(size)
    if pattern == "erased":
        return b"\xff" * size
    if pattern == "random":
        return random.Random(seed).randbytes(size)
    raise ValueError(f"unknown pattern {pattern!r}; allowed: {', '.join(PATTERNS)}")


def first_mismatch(expected: bytes, actual: bytes) -> int | None:
    """Index of the first differing byte (or of the shorter end), None if equal."""
    if expected == actual:
        return None
    for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if want != got:
            return index
    return min(len(expected), len(actual))


class _Anomalies:
    """Keeps the last few anomalies; an emulator replaces ``report`` to collect them itself."""

    def __init__(self) -> None:
        self.anomalies = 0
        self.recent: deque[str] = deque(maxlen=8)
        self.report: Callable[[str], None] = self._remember

    def _remember(self, message: str) -> None:
        self.anomalies += 1
        self.recent.append(message)


class _Memory(_Anomalies):
    """A chip's array of ``size`` bytes, filled from ``pattern``; readers verify against it."""

    def __init__(self, size: int, pattern: str, seed: int) -> None:
        super().__init__()
        self.size = size
        self.pattern = pattern
        self.seed = seed
        self.mem = bytearray(initial_content(pattern, size, seed))

    def expected(self, offset: int = 0, length: int | None = None) -> bytes:
        """What a correct reader must see now at ``offset`` (the whole chip by default)."""
        end = self.size if length is None else offset + length
        return bytes(self.mem[offset:end])


# --- I2C EEPROM ------------------------------------------------------------------


@dataclass(frozen=True)
class EepromType:
    name: str
    size: int
    page_size: int


# Sizes as in drivers/misc/eeprom/at24.c (AT24_CHIP_DATA, all AT24_FLAG_ADDR16);
# page sizes from the Atmel/Microchip AT24Cxx data sheets. at24 itself writes one
# byte per message unless a "pagesize" property is given (at24_probe).
EEPROM_TYPES = {
    t.name: t
    for t in (
        EepromType("24c32", 4096, 32),
        EepromType("24c64", 8192, 32),
        EepromType("24c128", 16384, 64),
        EepromType("24c256", 32768, 64),
        EepromType("24c512", 65536, 128),
    )
}


class Eeprom(_Memory):
    """A 24Cxx EEPROM with two address bytes, as seen on the I2C bus.

    A write message is [addr_hi, addr_lo, data...]: it sets the address
    pointer and programs data within the addressed page, wrapping to the page
    start (the chip increments only the in-page address bits). A read returns
    bytes from the pointer on, rolling over from the last byte to 0. After a
    write the pointer is the last written address + 1, with the same page wrap.

    ``busy_nacks`` makes the chip NACK that many messages after each write with
    data, as a real part does during its internal write cycle; at24 retries for
    up to its write_timeout (25 ms by default).
    """

    def __init__(
        self, model: str = "24c512", pattern: str = "counter", seed: int = 0, busy_nacks: int = 0
    ):
        if model not in EEPROM_TYPES:
            raise ValueError(f"unknown EEPROM {model!r}; allowed: {', '.join(EEPROM_TYPES)}")
        self.type = EEPROM_TYPES[model]
        super().__init__(self.type.size, pattern, seed)
        self.page_size = self.type.page_size
        self.pointer = 0
        self.busy_nacks = busy_nacks
        self._busy_left = 0

    @property
    def read_position(self) -> int:
        """Address the next sequential read starts at (where an unplug found the reader)."""
        return self.pointer

    def power_cycle(self) -> None:
        """Power lost with the adapter: the address pointer and a write cycle are gone."""
        self.pointer = 0
        self._busy_left = 0

    def _busy(self) -> bool:
        if self._busy_left:
            self._busy_left -= 1
            return True
        return False

    def i2c_write(self, data: bytes) -> bool:
        """One write message; False = NACK (write cycle in progress)."""
        if self._busy():
            return False
        if len(data) < 2:
            if len(data) == 1:
                self.report("eeprom: write with a single address byte ignored")
            return True
        self.pointer = ((data[0] << 8) | data[1]) & (self.size - 1)
        payload = data[2:]
        if not payload:
            return True
        page = self.page_size
        base = self.pointer & ~(page - 1)
        offset = self.pointer - base
        if len(payload) > page:
            self.report(f"eeprom: {len(payload)}-byte write exceeds the {page}-byte page")
        if offset + len(payload) <= page:
            self.mem[self.pointer : self.pointer + len(payload)] = payload
        else:
            for index, value in enumerate(payload):
                self.mem[base + (offset + index) % page] = value
        self.pointer = base + (offset + len(payload)) % page
        self._busy_left = self.busy_nacks
        return True

    def i2c_read(self, length: int) -> bytes | None:
        """Sequential read from the address pointer; None = NACK."""
        if self._busy():
            return None
        start = self.pointer
        end = start + length
        if end <= self.size:
            data = bytes(self.mem[start:end])
        else:
            data = bytes((self.mem[start:] + self.mem) * (length // self.size + 1))[:length]
        self.pointer = end % self.size
        return data


# --- I2C RTC ---------------------------------------------------------------------

RTC_REGISTERS = 64  # DS1307: 7 time registers, control (0x07), 56 bytes of RAM (0x08..0x3f)
RTC_TIME_REGISTERS = 7
RTC_BIT_CH = 0x80  # seconds register: clock halt (rtc-ds1307 reads the time as -EINVAL)
RTC_BIT_12HR = 0x40  # hours register: 12-hour mode
RTC_START = datetime.datetime(2026, 1, 1, 0, 0, 0)


def _bcd(value: int) -> int:
    return (value // 10) << 4 | value % 10


def _from_bcd(value: int) -> int:
    return (value >> 4) * 10 + (value & 0x0F)


class Ds1307(_Anomalies):
    """A Maxim DS1307 real-time clock as seen on the I2C bus (address 0x68).

    A write message is [register, data...]: it sets the register pointer and
    writes on from there; a read returns registers from the pointer on. The
    pointer wraps from 0x3f to 0x00, as on the chip. The time registers are
    BCD (seconds with the clock-halt bit, minutes, hours in 24-hour mode, day
    of week 1..7, date, month, year 00..99) and count on with ``clock`` from
    the last time they were written; the battery keeps them, and the RAM,
    when the adapter loses power. rtc-ds1307 reads all seven at once
    (ds1307_get_time) and writes them at once (ds1307_set_time).
    """

    size = RTC_REGISTERS

    def __init__(
        self, start: datetime.datetime = RTC_START, clock: Callable[[], float] = time.time
    ):
        super().__init__()
        self.regs = bytearray(RTC_REGISTERS)
        self.pointer = 0
        self.clock = clock
        self.halted = False
        self.time_reads = 0  # reads that started at the seconds register: rtc_read_time()
        self._set(start)

    def _set(self, when: datetime.datetime) -> None:
        self.base, self.set_at = when, self.clock()

    def now(self) -> datetime.datetime:
        """The time the chip keeps now."""
        if self.halted:
            return self.base
        return self.base + datetime.timedelta(seconds=int(self.clock() - self.set_at))

    def _time_bytes(self) -> bytes:
        now = self.now()
        return bytes(
            (
                _bcd(now.second) | (RTC_BIT_CH if self.halted else 0),
                _bcd(now.minute),
                _bcd(now.hour),
                now.isoweekday() % 7 + 1,  # 1..7, Sunday = 1 (any 1..7 numbering will do)
                _bcd(now.day),
                _bcd(now.month),
                _bcd(now.year % 100),
            )
        )

    def _registers(self) -> bytes:
        return self._time_bytes() + bytes(self.regs[RTC_TIME_REGISTERS:])

    @property
    def read_position(self) -> int:
        return self.pointer

    def power_cycle(self) -> None:
        """The adapter lost power: the battery keeps time and RAM; the pointer is gone."""
        self.pointer = 0

    def i2c_write(self, data: bytes) -> bool:
        """One write message; the chip ACKs every byte."""
        if not data:
            return True
        self.pointer = data[0] % RTC_REGISTERS
        payload = data[1:]
        if not payload:
            return True
        regs = bytearray(self._registers())
        touched = set()
        for value in payload:
            regs[self.pointer] = value
            touched.add(self.pointer)
            self.pointer = (self.pointer + 1) % RTC_REGISTERS
        self.regs[RTC_TIME_REGISTERS:] = regs[RTC_TIME_REGISTERS:]
        if touched & set(range(RTC_TIME_REGISTERS)):
            self._write_time(regs[:RTC_TIME_REGISTERS])
        return True

    def _write_time(self, regs: bytes) -> None:
        if regs[2] & RTC_BIT_12HR:
            self.report("rtc: 12-hour mode written; the model keeps 24-hour time")
        try:
            when = datetime.datetime(
                2000 + _from_bcd(regs[6]),
                _from_bcd(regs[5] & 0x1F),
                _from_bcd(regs[4] & 0x3F),
                _from_bcd(regs[2] & 0x3F),
                _from_bcd(regs[1] & 0x7F),
                _from_bcd(regs[0] & 0x7F),
            )
        except ValueError as exc:
            self.report(f"rtc: time registers written with no valid date ({exc}); ignored")
            return
        self.halted = bool(regs[0] & RTC_BIT_CH)
        self._set(when)

    def i2c_read(self, length: int) -> bytes:
        """Registers from the pointer on (the time as it is now), wrapping at 0x3f."""
        if self.pointer == 0:
            self.time_reads += 1
        regs = self._registers()
        data = bytes(regs[(self.pointer + i) % RTC_REGISTERS] for i in range(length))
        self.pointer = (self.pointer + length) % RTC_REGISTERS
        return data


# --- SPI NOR flash ---------------------------------------------------------------


@dataclass(frozen=True)
class FlashType:
    name: str
    jedec_id: bytes
    size: int


# drivers/mtd/spi-nor/winbond.c, winbond_nor_parts[]: these parts have
# .no_sfdp_flags = SECT_4K only, so spi-nor 6.12 takes spi_nor_init_params_deprecated()
# and never reads SFDP for them (core.c:3038-3049): probe traffic is READ ID only.
FLASH_TYPES = {
    t.name: t
    for t in (
        FlashType("w25x05", b"\xef\x30\x10", 64 * 1024),
        FlashType("w25x10", b"\xef\x30\x11", 128 * 1024),
        FlashType("w25x20", b"\xef\x30\x12", 256 * 1024),
        FlashType("w25x40", b"\xef\x30\x13", 512 * 1024),
        FlashType("w25x80", b"\xef\x30\x14", 1024 * 1024),
        FlashType("w25x16", b"\xef\x30\x15", 2 * 1024 * 1024),
    )
}

OP_PP = 0x02
OP_READ = 0x03
OP_WRDI = 0x04
OP_RDSR = 0x05
OP_WREN = 0x06
OP_FAST_READ = 0x0B
OP_SE_4K = 0x20
OP_CE_60 = 0x60
OP_CE = 0xC7
OP_BE_64K = 0xD8
OP_RDID = 0x9F

SR_WIP = 0x01
SR_WEL = 0x02

PAGE_SIZE = 256
SECTOR_SIZE = 4096
BLOCK_SIZE = 65536

# opcode -> bytes after the opcode before the data phase (address + dummy)
_HEADER = {
    OP_READ: 3,
    OP_FAST_READ: 4,
    OP_PP: 3,
    OP_SE_4K: 3,
    OP_BE_64K: 3,
    OP_RDID: 0,
    OP_RDSR: 0,
    OP_WREN: 0,
    OP_WRDI: 0,
    OP_CE: 0,
    OP_CE_60: 0,
}
_ERASE = {OP_SE_4K: SECTOR_SIZE, OP_BE_64K: BLOCK_SIZE}
_NEEDS_WEL = (OP_PP, OP_SE_4K, OP_BE_64K, OP_CE, OP_CE_60)


class SpiNorFlash(_Memory):
    """A small Winbond W25X serial NOR flash (3-byte addresses, 256-byte pages).

    Fed chip-select-delimited byte streams: ``select()``, any number of
    ``transfer(mosi) -> miso`` calls, ``deselect()``. A command may be split
    over transfers in any way (spi-mem sends opcode, address, dummy and data
    separately, and spi-dln2 splits data into 256-byte pieces); it ends only
    at ``deselect()``, where write-type commands take effect, as on the chip.

    Program and erase set WIP; it clears once ``busy_polls`` status bytes have
    been read with WIP set and ``busy_seconds`` have passed (both 0 = at once).
    While WIP is set the chip ignores every command except READ STATUS.
    """

    def __init__(
        self,
        model: str = "w25x05",
        pattern: str = "counter",
        seed: int = 0,
        busy_polls: int = 0,
        busy_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if model not in FLASH_TYPES:
            raise ValueError(f"unknown flash {model!r}; allowed: {', '.join(FLASH_TYPES)}")
        self.type = FLASH_TYPES[model]
        super().__init__(self.type.size, pattern, seed)
        self.jedec_id = self.type.jedec_id
        self.busy_polls = busy_polls
        self.busy_seconds = busy_seconds
        self.clock = clock
        self.wel = False
        self._wip = False
        self._polls_left = 0
        self._busy_until = 0.0
        self.selected = False
        self.commands = 0
        self.ignored_opcodes: dict[int, int] = {}  # opcodes outside the W25X set, counted
        self.read_position = 0  # address after the last byte a READ clocked out
        self._reset_command()

    def _reset_command(self) -> None:
        self._op: int | None = None
        self._count = 0  # bytes clocked in this chip-select window
        self._header = bytearray()
        self._need = 0
        self._addr = 0
        self._ignored = False
        self._data = bytearray()

    def power_cycle(self) -> None:
        """Power lost with the adapter: a command in flight, WEL and WIP are gone."""
        self.selected = False
        self._reset_command()
        self.wel = False
        self._wip = False
        self._polls_left = 0

    # --- status ------------------------------------------------------------------

    def busy(self) -> bool:
        if self._wip and self._polls_left <= 0 and self.clock() >= self._busy_until:
            self._wip = False
            self.wel = False
        return self._wip

    @property
    def status(self) -> int:
        busy = self.busy()
        return (SR_WIP if busy else 0) | (SR_WEL if self.wel else 0)

    def _start_busy(self) -> None:
        self._wip = True
        self._polls_left = self.busy_polls
        self._busy_until = self.clock() + self.busy_seconds
        self.busy()

    # --- chip select ---------------------------------------------------------------

    def select(self) -> None:
        if self.selected:
            self.deselect()
        self.selected = True
        self._reset_command()

    def deselect(self) -> None:
        if not self.selected:
            return
        self.selected = False
        if self._op is not None and not self._ignored:
            self._finish()
        self._reset_command()

    def transfer(self, mosi: bytes) -> bytes:
        """Clock ``mosi`` in while selected; return the bytes clocked out (same length)."""
        if not self.selected:
            self.report("flash: transfer without chip select")
            return b"\xff" * len(mosi)
        length = len(mosi)
        index = 0
        out = bytearray()
        while index < length and (self._op is None or len(self._header) < self._need):
            value = mosi[index]
            index += 1
            self._count += 1
            out.append(0xFF)
            if self._op is None:
                self._begin(value)
            else:
                self._header.append(value)
            if not self._ignored and self._op is not None and len(self._header) == self._need:
                self._addr = (int.from_bytes(self._header[:3], "big") if self._need else 0) % (
                    self.size
                )
        if index < length:
            out += self._data_phase(mosi, index, length - index)
        return bytes(out)

    def _begin(self, opcode: int) -> None:
        self._op = opcode
        self.commands += 1
        if opcode != OP_RDSR and self.busy():
            self._ignored = True
            self.report(f"flash: opcode {opcode:#04x} while busy, ignored")
            return
        if opcode not in _HEADER:
            # A W25X decodes only its own instruction set; any other opcode is ignored
            # and DO stays high-impedance, which the bus reads as 1s (MISO pulled up).
            # Drivers are entitled to send them (spi-nor reads the configuration
            # register, 0x35, of parts it cannot tell lack one), so it is no anomaly.
            self._ignored = True
            self.ignored_opcodes[opcode] = self.ignored_opcodes.get(opcode, 0) + 1
            return
        self._need = _HEADER[opcode]

    def _data_phase(self, mosi: bytes, start: int, count: int) -> bytes:
        self._count += count
        op = self._op
        if self._ignored:
            return b"\xff" * count
        if op in (OP_READ, OP_FAST_READ):
            addr = self._addr
            end = addr + count
            if end <= self.size:
                data = bytes(self.mem[addr:end])
            else:
                data = bytes((self.mem[addr:] + self.mem) * (count // self.size + 1))[:count]
            self._addr = self.read_position = end % self.size
            return data
        if op == OP_RDSR:
            out = bytearray()
            for _ in range(count):
                value = self.status
                if value & SR_WIP:
                    self._polls_left -= 1
                out.append(value)
            return bytes(out)
        if op == OP_RDID:
            ident = self.jedec_id
            skip = self._count - count - 1  # ID bytes already sent in this window
            return bytes(ident[(skip + i) % len(ident)] for i in range(count))
        if op == OP_PP:
            self._data += mosi[start : start + count]
            return b"\xff" * count
        return b"\xff" * count

    def _finish(self) -> None:
        """Chip select went high: write-type commands execute now."""
        op = self._op
        if op in (OP_WREN, OP_WRDI, OP_CE, OP_CE_60) and self._count != 1:
            self.report(f"flash: opcode {op:#04x} with {self._count - 1} extra bytes, ignored")
            return
        if op == OP_WREN:
            self.wel = True
            return
        if op == OP_WRDI:
            self.wel = False
            return
        if op not in _NEEDS_WEL:
            return
        if len(self._header) < self._need:
            self.report(f"flash: opcode {op:#04x} ended after {self._count} bytes, ignored")
            return
        if not self.wel:
            self.report(f"flash: opcode {op:#04x} without WRITE ENABLE, ignored")
            return
        if op == OP_PP:
            self._program()
        elif op in _ERASE:
            if self._count != 4:
                self.report(f"flash: erase {op:#04x} with {self._count - 4} extra bytes, ignored")
                return
            size = _ERASE[op]
            base = self._addr & ~(size - 1)
            self.mem[base : base + size] = b"\xff" * size
        else:
            self.mem[:] = b"\xff" * self.size
        self._start_busy()

    def _program(self) -> None:
        data = self._data
        if not data:
            self.report("flash: page program without data, ignored")
            return
        base = self._addr & ~(PAGE_SIZE - 1)
        offset = self._addr - base
        mem = self.mem
        # more than a page wraps and overwrites: only the last 256 bytes clocked in count
        for index in range(max(0, len(data) - PAGE_SIZE), len(data)):
            where = base + (offset + index) % PAGE_SIZE
            mem[where] &= data[index]
        self._start_busy()

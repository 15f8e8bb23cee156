"""Diolan DLN-2 (a257:2013) emulated through FunctionFS, for the kernel's own dln2 drivers.

Protocol facts come from the host drivers in Linux 6.12 (drivers/mfd/dln2.c,
drivers/i2c/busses/i2c-dln2.c, drivers/spi/spi-dln2.c, drivers/gpio/gpio-dln2.c,
drivers/iio/adc/dln2-adc.c):

- every message starts with {le16 size, le16 id, le16 echo, le16 handle}; id is
  DLN2_CMD(cmd, module) = cmd | module << 8; a reply repeats id, echo (the host's
  receive slot) and handle, adds le16 result, and must be exactly ``size`` bytes
  (dln2_rx). Results above 0x80 become -EREMOTEIO (_dln2_transfer);
- the host waits 200 ms for each reply (DLN2_USB_TIMEOUT), so the emulator
  thread must already be reading the OUT endpoint when the UDC is bound;
- the core probe asks GET_DEVICE_VER (hardware id must be 0x200) and
  GET_DEVICE_SN; then gpio-dln2, i2c-dln2, spi-dln2 and dln2-adc probe.

Error result values are Diolan's (dln_results.h of their public API); the
kernel only distinguishes "above 0x80".

Layers: pure encode/decode functions and ``MessageStream``; ``Dln2Device`` (no
I/O) answers one request with one reply and counts work per module;
``Responder`` adds the unplug triggers; ``Emulator`` wires them to gadget.py.
"""

from __future__ import annotations

import struct
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from guest.adapters import gadget
from guest.adapters.gadget import (
    USB_CLASS_VENDOR_SPEC,
    XFER_BULK,
    AdapterEmulator,
    ArmedTriggers,
    ControlTransfer,
    FfsGadget,
    GadgetConfig,
    bound_driver,
    descriptors_blob,
    endpoint_descriptor,
    interface_descriptor,
    strings_blob,
)

VENDOR_ID = 0xA257
PRODUCT_ID = 0x2013
HW_ID = 0x200  # DLN2_HW_ID, checked by dln2_check_hw

MODULE_GENERIC = 0x00
MODULE_GPIO = 0x01
MODULE_SPI = 0x02
MODULE_I2C = 0x03
MODULE_ADC = 0x06
MODULE_NAMES = {
    MODULE_GENERIC: "generic",
    MODULE_GPIO: "gpio",
    MODULE_SPI: "spi",
    MODULE_I2C: "i2c",
    MODULE_ADC: "adc",
}
MODULES = (*MODULE_NAMES.values(), "unknown")

# enum dln2_handle (dln2.c): the host's receive-slot namespace per sub-driver
HANDLE_EVENT, HANDLE_CTRL, HANDLE_GPIO, HANDLE_I2C, HANDLE_SPI, HANDLE_ADC = range(6)
MODULE_HANDLES = {
    MODULE_GENERIC: HANDLE_CTRL,
    MODULE_GPIO: HANDLE_GPIO,
    MODULE_I2C: HANDLE_I2C,
    MODULE_SPI: HANDLE_SPI,
    MODULE_ADC: HANDLE_ADC,
}


def dln2_cmd(cmd: int, module: int) -> int:
    return cmd | module << 8


CMD_GET_DEVICE_VER = dln2_cmd(0x30, MODULE_GENERIC)
CMD_GET_DEVICE_SN = dln2_cmd(0x31, MODULE_GENERIC)

GPIO_GET_PIN_COUNT = dln2_cmd(0x01, MODULE_GPIO)
GPIO_SET_DEBOUNCE = dln2_cmd(0x04, MODULE_GPIO)
GPIO_PIN_GET_VAL = dln2_cmd(0x0B, MODULE_GPIO)
GPIO_PIN_SET_OUT_VAL = dln2_cmd(0x0C, MODULE_GPIO)
GPIO_PIN_GET_OUT_VAL = dln2_cmd(0x0D, MODULE_GPIO)
GPIO_PIN_ENABLE = dln2_cmd(0x10, MODULE_GPIO)
GPIO_PIN_DISABLE = dln2_cmd(0x11, MODULE_GPIO)
GPIO_PIN_SET_DIRECTION = dln2_cmd(0x13, MODULE_GPIO)
GPIO_PIN_GET_DIRECTION = dln2_cmd(0x14, MODULE_GPIO)
GPIO_PIN_SET_EVENT_CFG = dln2_cmd(0x1E, MODULE_GPIO)

I2C_ENABLE = dln2_cmd(0x01, MODULE_I2C)
I2C_DISABLE = dln2_cmd(0x02, MODULE_I2C)
I2C_WRITE = dln2_cmd(0x06, MODULE_I2C)
I2C_READ = dln2_cmd(0x07, MODULE_I2C)
I2C_MAX_XFER_SIZE = 256

SPI_ENABLE = dln2_cmd(0x11, MODULE_SPI)
SPI_DISABLE = dln2_cmd(0x12, MODULE_SPI)
SPI_SET_MODE = dln2_cmd(0x14, MODULE_SPI)
SPI_SET_FRAME_SIZE = dln2_cmd(0x16, MODULE_SPI)
SPI_SET_FREQUENCY = dln2_cmd(0x18, MODULE_SPI)
SPI_READ_WRITE = dln2_cmd(0x1A, MODULE_SPI)
SPI_READ = dln2_cmd(0x1B, MODULE_SPI)
SPI_WRITE = dln2_cmd(0x1C, MODULE_SPI)
SPI_SET_SS = dln2_cmd(0x26, MODULE_SPI)
SPI_SS_MULTI_ENABLE = dln2_cmd(0x38, MODULE_SPI)
SPI_SS_MULTI_DISABLE = dln2_cmd(0x39, MODULE_SPI)
SPI_GET_SUPPORTED_FRAME_SIZES = dln2_cmd(0x43, MODULE_SPI)
SPI_GET_SS_COUNT = dln2_cmd(0x44, MODULE_SPI)
SPI_GET_MIN_FREQUENCY = dln2_cmd(0x45, MODULE_SPI)
SPI_GET_MAX_FREQUENCY = dln2_cmd(0x46, MODULE_SPI)
SPI_MAX_XFER_SIZE = 256
SPI_ATTR_LEAVE_SS_LOW = 0x01
SPI_FRAME_SIZES = tuple(range(8, 17))

RES_SUCCESS = 0x00
RES_INVALID_COMMAND_SIZE = 0x88
RES_COMMAND_NOT_SUPPORTED = 0x91
RES_MUST_BE_DISABLED = 0x95
RES_INVALID_PORT_NUMBER = 0xA8
RES_INVALID_PIN_NUMBER = 0xAB
RES_INVALID_BUFFER_SIZE = 0xAE
RES_DISABLED = 0xB7
RES_SPI_INVALID_FRAME_SIZE = 0xB8
RES_SPI_INVALID_SS_VALUE = 0xB9
RES_I2C_ADDRESS_NACK = 0xBA  # DLN_RES_I2C_MASTER_SENDING_ADDRESS_FAILED
RES_I2C_INVALID_MEM_ADDRESS_LENGTH = 0xBC
RES_INVALID_FREQUENCY = 0xC3
RES_INVALID_MODE = 0xC7
RES_INVALID_VALUE = 0xE2

HEADER = struct.Struct("<HHHH")
RESPONSE = struct.Struct("<HHHHH")
HEADER_SIZE = HEADER.size  # 8
RESPONSE_SIZE = RESPONSE.size  # 10
HOST_RX_BUF_SIZE = 512  # DLN2_RX_BUF_SIZE: no reply may be longer
U16 = struct.Struct("<H")
U32 = struct.Struct("<I")
I2C_XFER = struct.Struct("<BBBIH")  # port, addr, mem_addr_len, le32 mem_addr, le16 buf_len
SPI_XFER = struct.Struct("<BHB")  # port, le16 size, attr
SPI_FREQ = struct.Struct("<BI")  # port, le32 speed
GPIO_PIN_VAL = struct.Struct("<HB")  # le16 pin, u8 value
GPIO_EVENT_CFG = struct.Struct("<HBH")  # le16 pin, u8 type, le16 period

_ZEROS = memoryview(bytes(SPI_MAX_XFER_SIZE))
_ONES = b"\xff" * SPI_MAX_XFER_SIZE


# --- encoding ------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    size: int
    id: int
    echo: int
    handle: int

    @property
    def module(self) -> int:
        return self.id >> 8

    @property
    def command(self) -> int:
        return self.id & 0xFF


def encode_request(cmd: int, echo: int, handle: int, payload: bytes = b"") -> bytes:
    """What dln2_prep_buf builds on the host."""
    return HEADER.pack(HEADER_SIZE + len(payload), cmd, echo, handle) + payload


def encode_response(cmd: int, echo: int, handle: int, result: int, payload: bytes = b"") -> bytes:
    return RESPONSE.pack(RESPONSE_SIZE + len(payload), cmd, echo, handle, result) + payload


def decode_header(buf: bytes) -> Header:
    return Header(*HEADER.unpack_from(buf))


def decode_response(buf: bytes) -> tuple[Header, int, bytes]:
    """(header, result, payload) of a reply."""
    size, cmd, echo, handle, result = RESPONSE.unpack_from(buf)
    return Header(size, cmd, echo, handle), result, bytes(buf[RESPONSE_SIZE:size])


class MessageStream:
    """Cuts what the OUT endpoint delivers into messages by their size field.

    At high speed every DLN-2 request is shorter than a 512-byte packet, so a
    read normally holds exactly one message and is passed through as is (a
    view into the read buffer, valid until the next read). Partial and
    concatenated messages (full speed) are reassembled.
    """

    def __init__(self) -> None:
        self._pending = bytearray()
        self.dropped = 0  # bytes thrown away because a size field was impossible

    def reset(self) -> None:
        self._pending.clear()

    def feed(self, data: memoryview | bytes) -> list:
        if not self._pending and len(data) >= HEADER_SIZE and U16.unpack_from(data)[0] == len(data):
            return [data]
        pending = self._pending
        pending += data
        messages = []
        while len(pending) >= HEADER_SIZE:
            size = U16.unpack_from(pending)[0]
            if size < HEADER_SIZE:
                self.dropped += len(pending)
                pending.clear()
                break
            if len(pending) < size:
                break
            messages.append(bytes(pending[:size]))
            del pending[:size]
        return messages


# --- the device ----------------------------------------------------------------------


@dataclass
class ModuleStats:
    requests: int = 0
    errors: int = 0  # replies with result > 0x80
    unsupported: int = 0  # commands of an absent module (GPIO off, ADC)
    nacks: int = 0  # I2C transfers to an absent or busy address
    transfers: int = 0  # completed I2C read/write messages, SPI read/write/read-write commands
    bytes_read: int = 0  # data bytes returned to the host
    bytes_written: int = 0  # data bytes received from the host


COUNTERS = tuple(ModuleStats.__dataclass_fields__)


class _BadRequest(Exception):
    def __init__(self, result: int, message: str, problem: bool = True):
        super().__init__(message)
        self.result = result
        self.problem = problem


def _expect(payload, size: int, what: str) -> None:
    if len(payload) != size:
        raise _BadRequest(
            RES_INVALID_COMMAND_SIZE, f"{what}: {len(payload)}-byte payload, expected {size}"
        )


class Dln2Device:
    """The DLN-2 firmware as the host drivers see it: request bytes in, reply bytes out.

    ``i2c`` maps 7-bit addresses to targets with ``i2c_write(data) -> bool``
    and ``i2c_read(length) -> bytes | None`` (False/None = NACK; absent
    addresses NACK), like chipmodels.Eeprom; ``flash`` (a chipmodels.SpiNorFlash)
    sits on SPI chip select ``flash_cs``. With ``gpio=False`` every
    GPIO command is answered "not supported", so gpio-dln2 fails its probe
    (-EREMOTEIO) while i2c and spi still come up; the ADC module is always
    absent. Malformed or unknown requests, and requests a real adapter would
    reject because of the host's own ordering (a transfer on a disabled
    module), are answered with an error result and recorded in ``problems``.
    The SPI frequency range and chip-select count are this emulator's choice,
    not values read from a real DLN-2.
    """

    def __init__(
        self,
        *,
        i2c: dict | None = None,
        flash=None,
        flash_cs: int = 0,
        gpio: bool = True,
        gpio_pins: int = 32,
        serial: int = 0x48415231,
        spi_ss_count: int = 4,
        spi_min_hz: int = 1_000,
        spi_max_hz: int = 18_000_000,
    ):
        self.i2c = dict(i2c or {})
        self.flash = flash
        self.flash_cs = flash_cs
        self.gpio_enabled = gpio
        self.gpio_pins = gpio_pins
        self.serial = serial
        self.spi_ss_count = spi_ss_count
        self.spi_min_hz = spi_min_hz
        self.spi_max_hz = spi_max_hz
        self.stats = {name: ModuleStats() for name in MODULES}
        self.problem_count = 0
        self.problems: deque[str] = deque(maxlen=16)
        for target in self.i2c.values():
            if hasattr(target, "report"):
                target.report = self._reporter("i2c")
        if flash is not None:
            flash.report = self._reporter("spi")
        self._ss_all = (1 << spi_ss_count) - 1
        self._version = U32.pack(HW_ID)
        self._serial = U32.pack(serial)
        frame_sizes = bytes(SPI_FRAME_SIZES)
        self._frame_sizes = bytes([len(frame_sizes)]) + frame_sizes.ljust(36, b"\0")
        self._ss_count = U16.pack(spi_ss_count)
        self._min_hz = U32.pack(spi_min_hz)
        self._max_hz = U32.pack(spi_max_hz)
        self._handlers = self._handler_table()
        self.gpio_input = bytearray(gpio_pins)
        self.reset()

    def _handler_table(self) -> dict[int, Callable]:
        table = {
            CMD_GET_DEVICE_VER: self._get_device_ver,
            CMD_GET_DEVICE_SN: self._get_device_sn,
            I2C_ENABLE: self._i2c_enable,
            I2C_DISABLE: self._i2c_disable,
            I2C_WRITE: self._i2c_write,
            I2C_READ: self._i2c_read,
            SPI_ENABLE: self._spi_enable,
            SPI_DISABLE: self._spi_disable,
            SPI_SET_MODE: self._spi_set_mode,
            SPI_SET_FRAME_SIZE: self._spi_set_frame_size,
            SPI_SET_FREQUENCY: self._spi_set_frequency,
            SPI_READ_WRITE: self._spi_read_write,
            SPI_READ: self._spi_read,
            SPI_WRITE: self._spi_write,
            SPI_SET_SS: self._spi_set_ss,
            SPI_SS_MULTI_ENABLE: self._spi_ss_multi_enable,
            SPI_SS_MULTI_DISABLE: self._spi_ss_multi_disable,
            SPI_GET_SUPPORTED_FRAME_SIZES: self._spi_frame_sizes,
            SPI_GET_SS_COUNT: self._spi_get_ss_count,
            SPI_GET_MIN_FREQUENCY: self._spi_min_frequency,
            SPI_GET_MAX_FREQUENCY: self._spi_max_frequency,
        }
        if self.gpio_enabled:
            table.update(
                {
                    GPIO_GET_PIN_COUNT: self._gpio_pin_count,
                    GPIO_SET_DEBOUNCE: self._gpio_set_debounce,
                    GPIO_PIN_GET_VAL: self._gpio_pin_get_val,
                    GPIO_PIN_SET_OUT_VAL: self._gpio_pin_set_out_val,
                    GPIO_PIN_GET_OUT_VAL: self._gpio_pin_get_out_val,
                    GPIO_PIN_ENABLE: self._gpio_pin_enable,
                    GPIO_PIN_DISABLE: self._gpio_pin_disable,
                    GPIO_PIN_SET_DIRECTION: self._gpio_pin_set_direction,
                    GPIO_PIN_GET_DIRECTION: self._gpio_pin_get_direction,
                    GPIO_PIN_SET_EVENT_CFG: self._gpio_pin_set_event_cfg,
                }
            )
        return table

    def reset(self) -> None:
        """Power cycle: every module disabled and unconfigured; chip contents survive."""
        self.i2c_on = False
        self.spi_on = False
        self.spi_mode = 0
        self.spi_bpw = 8
        self.spi_hz = self.spi_max_hz
        self.spi_ss = 0xFF  # last SET_SS value; a 0 bit selects that line
        self.spi_ss_enabled = 0
        self.spi_ss_low = False
        self.gpio_on = bytearray(self.gpio_pins)
        self.gpio_dir = bytearray(self.gpio_pins)
        self.gpio_out = bytearray(self.gpio_pins)
        self.gpio_event_cfg: dict[int, tuple[int, int]] = {}
        self.gpio_debounce = 0
        for target in self.i2c.values():
            if hasattr(target, "power_cycle"):
                target.power_cycle()
        if self.flash is not None:
            self.flash.power_cycle()

    # --- bookkeeping -----------------------------------------------------------------

    def problem(self, module: str, message: str) -> None:
        self.problem_count += 1
        self.problems.append(f"{module}: {message}")

    def _reporter(self, module: str) -> Callable[[str], None]:
        return lambda message: self.problem(module, message)

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {name: asdict(stats) for name, stats in self.stats.items()}

    # --- dispatch --------------------------------------------------------------------

    def process(self, msg) -> tuple[str, bytes | None]:
        """One request (bytes or memoryview) -> (module name, reply); reply None if unanswerable."""
        if len(msg) < HEADER_SIZE:
            self.problem("unknown", f"{len(msg)}-byte message, shorter than a header")
            return "unknown", None
        size, cmd, echo, handle = HEADER.unpack_from(msg)
        module_id = cmd >> 8
        module = MODULE_NAMES.get(module_id, "unknown")
        stats = self.stats[module]
        stats.requests += 1
        payload = msg[HEADER_SIZE:]
        handler = self._handlers.get(cmd)
        try:
            if size != len(msg):
                raise _BadRequest(
                    RES_INVALID_COMMAND_SIZE, f"header size {size}, message {len(msg)} bytes"
                )
            if MODULE_HANDLES.get(module_id, handle) != handle:
                self.problem(module, f"command {cmd:#06x} on handle {handle}")
            if handler is None:
                absent = module_id == MODULE_ADC or (
                    module_id == MODULE_GPIO and not self.gpio_enabled
                )
                if absent:
                    stats.unsupported += 1
                raise _BadRequest(
                    RES_COMMAND_NOT_SUPPORTED, f"unknown command {cmd:#06x}", problem=not absent
                )
            result, data = handler(payload)
        except _BadRequest as bad:
            if bad.problem:
                self.problem(module, f"{cmd:#06x}: {bad}")
            result, data = bad.result, b""
        if result > 0x80:
            stats.errors += 1
        return module, RESPONSE.pack(RESPONSE_SIZE + len(data), cmd, echo, handle, result) + data

    # --- generic ---------------------------------------------------------------------

    def _get_device_ver(self, payload) -> tuple[int, bytes]:
        _expect(payload, 0, "GET_DEVICE_VER")
        return RES_SUCCESS, self._version

    def _get_device_sn(self, payload) -> tuple[int, bytes]:
        _expect(payload, 0, "GET_DEVICE_SN")
        return RES_SUCCESS, self._serial

    # --- I2C -------------------------------------------------------------------------

    @staticmethod
    def _port(port: int) -> None:
        if port != 0:
            raise _BadRequest(RES_INVALID_PORT_NUMBER, f"port {port} (the DLN-2 has port 0)")

    def _i2c_enable(self, payload) -> tuple[int, bytes]:
        _expect(payload, 1, "I2C_ENABLE")
        self._port(payload[0])
        self.i2c_on = True
        return RES_SUCCESS, b""

    def _i2c_disable(self, payload) -> tuple[int, bytes]:
        _expect(payload, 1, "I2C_DISABLE")
        self._port(payload[0])
        self.i2c_on = False
        return RES_SUCCESS, b""

    def _i2c_header(self, payload, what: str) -> tuple[int, int]:
        if len(payload) < I2C_XFER.size:
            raise _BadRequest(RES_INVALID_COMMAND_SIZE, f"{what}: {len(payload)}-byte payload")
        port, addr, mem_len, _mem_addr, length = I2C_XFER.unpack_from(payload)
        self._port(port)
        if not self.i2c_on:
            raise _BadRequest(RES_DISABLED, f"{what} while the I2C module is disabled")
        if mem_len:
            raise _BadRequest(
                RES_I2C_INVALID_MEM_ADDRESS_LENGTH,
                f"{what}: mem_addr_len {mem_len} not emulated " "(i2c-dln2 always sends 0)",
            )
        if length > I2C_MAX_XFER_SIZE:
            raise _BadRequest(RES_INVALID_BUFFER_SIZE, f"{what}: {length} bytes")
        return addr, length

    def _i2c_write(self, payload) -> tuple[int, bytes]:
        addr, length = self._i2c_header(payload, "I2C_WRITE")
        _expect(payload, I2C_XFER.size + length, "I2C_WRITE")
        stats = self.stats["i2c"]
        target = self.i2c.get(addr)
        if target is None or not target.i2c_write(bytes(payload[I2C_XFER.size :])):
            stats.nacks += 1
            return RES_I2C_ADDRESS_NACK, b""
        stats.transfers += 1
        stats.bytes_written += length
        return RES_SUCCESS, b""

    def _i2c_read(self, payload) -> tuple[int, bytes]:
        addr, length = self._i2c_header(payload, "I2C_READ")
        _expect(payload, I2C_XFER.size, "I2C_READ")
        stats = self.stats["i2c"]
        target = self.i2c.get(addr)
        data = None if target is None else target.i2c_read(length)
        if data is None:
            stats.nacks += 1
            return RES_I2C_ADDRESS_NACK, b""
        stats.transfers += 1
        stats.bytes_read += length
        return RES_SUCCESS, U16.pack(length) + data

    # --- SPI -------------------------------------------------------------------------

    def _spi_port(self, payload, size: int, what: str) -> None:
        _expect(payload, size, what)
        self._port(payload[0])

    def _spi_config(self, payload, size: int, what: str) -> None:
        """Settings the driver may only change with the module disabled (spi-dln2.c comments)."""
        self._spi_port(payload, size, what)
        if self.spi_on:
            raise _BadRequest(RES_MUST_BE_DISABLED, f"{what} while the SPI module is enabled")

    def _spi_release(self) -> None:
        if self.spi_ss_low and self.flash is not None:
            self.flash.deselect()
        self.spi_ss_low = False

    def _spi_enable(self, payload) -> tuple[int, bytes]:
        self._spi_port(payload, 1, "SPI_ENABLE")
        self.spi_on = True
        return RES_SUCCESS, b""

    def _spi_disable(self, payload) -> tuple[int, bytes]:
        self._spi_port(payload, 2, "SPI_DISABLE")
        self._spi_release()
        self.spi_on = False
        return RES_SUCCESS, b""

    def _spi_set_mode(self, payload) -> tuple[int, bytes]:
        self._spi_config(payload, 2, "SPI_SET_MODE")
        if payload[1] > 3:
            raise _BadRequest(RES_INVALID_MODE, f"SPI mode {payload[1]}")
        self.spi_mode = payload[1]
        return RES_SUCCESS, b""

    def _spi_set_frame_size(self, payload) -> tuple[int, bytes]:
        self._spi_config(payload, 2, "SPI_SET_FRAME_SIZE")
        if payload[1] not in SPI_FRAME_SIZES:
            raise _BadRequest(RES_SPI_INVALID_FRAME_SIZE, f"{payload[1]} bits per word")
        self.spi_bpw = payload[1]
        return RES_SUCCESS, b""

    def _spi_set_frequency(self, payload) -> tuple[int, bytes]:
        self._spi_config(payload, SPI_FREQ.size, "SPI_SET_FREQUENCY")
        hz = SPI_FREQ.unpack_from(payload)[1]
        if hz < self.spi_min_hz:
            raise _BadRequest(RES_INVALID_FREQUENCY, f"{hz} Hz below {self.spi_min_hz}")
        self.spi_hz = min(hz, self.spi_max_hz)  # "rounds down to the closest available"
        return RES_SUCCESS, U32.pack(self.spi_hz)

    def _spi_set_ss(self, payload) -> tuple[int, bytes]:
        self._spi_port(payload, 2, "SPI_SET_SS")
        if ~payload[1] & 0xFF & ~self._ss_all:
            raise _BadRequest(RES_SPI_INVALID_SS_VALUE, f"SS value {payload[1]:#04x}")
        if payload[1] != self.spi_ss:
            self._spi_release()
        self.spi_ss = payload[1]
        return RES_SUCCESS, b""

    def _spi_ss_multi(self, payload, enable: bool) -> tuple[int, bytes]:
        what = "SPI_SS_MULTI_ENABLE" if enable else "SPI_SS_MULTI_DISABLE"
        self._spi_config(payload, 2, what)
        if payload[1] & ~self._ss_all:
            raise _BadRequest(RES_SPI_INVALID_SS_VALUE, f"{what} mask {payload[1]:#04x}")
        if enable:
            self.spi_ss_enabled |= payload[1]
        else:
            self.spi_ss_enabled &= ~payload[1]
        return RES_SUCCESS, b""

    def _spi_ss_multi_enable(self, payload) -> tuple[int, bytes]:
        return self._spi_ss_multi(payload, True)

    def _spi_ss_multi_disable(self, payload) -> tuple[int, bytes]:
        return self._spi_ss_multi(payload, False)

    def _spi_frame_sizes(self, payload) -> tuple[int, bytes]:
        self._spi_port(payload, 1, "SPI_GET_SUPPORTED_FRAME_SIZES")
        return RES_SUCCESS, self._frame_sizes

    def _spi_get_ss_count(self, payload) -> tuple[int, bytes]:
        self._spi_port(payload, 1, "SPI_GET_SS_COUNT")
        return RES_SUCCESS, self._ss_count

    def _spi_min_frequency(self, payload) -> tuple[int, bytes]:
        self._spi_port(payload, 1, "SPI_GET_MIN_FREQUENCY")
        return RES_SUCCESS, self._min_hz

    def _spi_max_frequency(self, payload) -> tuple[int, bytes]:
        self._spi_port(payload, 1, "SPI_GET_MAX_FREQUENCY")
        return RES_SUCCESS, self._max_hz

    def _spi_xfer(self, payload, what: str, mosi_in_request: bool) -> tuple[int, bytes]:
        """Shift one transfer; the lines go low at its start and stay low with LEAVE_SS_LOW."""
        if len(payload) < SPI_XFER.size:
            raise _BadRequest(RES_INVALID_COMMAND_SIZE, f"{what}: {len(payload)}-byte payload")
        port, size, attr = SPI_XFER.unpack_from(payload)
        self._port(port)
        _expect(payload, SPI_XFER.size + (size if mosi_in_request else 0), what)
        if size > SPI_MAX_XFER_SIZE:
            raise _BadRequest(RES_INVALID_BUFFER_SIZE, f"{what}: {size} bytes")
        if not self.spi_on:
            raise _BadRequest(RES_DISABLED, f"{what} while the SPI module is disabled")
        mosi = payload[SPI_XFER.size :] if mosi_in_request else _ZEROS[:size]
        flash = self.flash
        selected = ~self.spi_ss & self.spi_ss_enabled
        if flash is not None and selected >> self.flash_cs & 1:
            if self.spi_bpw != 8 or self.spi_mode in (1, 2):
                self.problem(
                    "spi",
                    f"flash accessed with {self.spi_bpw}-bit words in " f"mode {self.spi_mode}",
                )
            if not self.spi_ss_low:
                flash.select()
            miso = flash.transfer(mosi)
            if attr & SPI_ATTR_LEAVE_SS_LOW:
                self.spi_ss_low = True
            else:
                flash.deselect()
                self.spi_ss_low = False
        else:
            miso = _ONES[:size]
            self.spi_ss_low = bool(attr & SPI_ATTR_LEAVE_SS_LOW)
        self.stats["spi"].transfers += 1
        return size, miso

    def _spi_write(self, payload) -> tuple[int, bytes]:
        size, _ = self._spi_xfer(payload, "SPI_WRITE", True)
        self.stats["spi"].bytes_written += size
        return RES_SUCCESS, b""

    def _spi_read(self, payload) -> tuple[int, bytes]:
        size, miso = self._spi_xfer(payload, "SPI_READ", False)
        self.stats["spi"].bytes_read += size
        return RES_SUCCESS, U16.pack(size) + miso

    def _spi_read_write(self, payload) -> tuple[int, bytes]:
        size, miso = self._spi_xfer(payload, "SPI_READ_WRITE", True)
        stats = self.stats["spi"]
        stats.bytes_written += size
        stats.bytes_read += size
        return RES_SUCCESS, U16.pack(size) + miso

    # --- GPIO ------------------------------------------------------------------------

    def _pin(self, payload, size: int, what: str) -> int:
        _expect(payload, size, what)
        pin = U16.unpack_from(payload)[0]
        if pin >= self.gpio_pins:
            raise _BadRequest(RES_INVALID_PIN_NUMBER, f"{what}: pin {pin}")
        return pin

    def set_gpio_input(self, pin: int, value: int) -> None:
        """The level an external signal drives on an input pin."""
        self.gpio_input[pin] = 1 if value else 0

    def _gpio_pin_count(self, payload) -> tuple[int, bytes]:
        _expect(payload, 0, "GPIO_GET_PIN_COUNT")
        return RES_SUCCESS, U16.pack(self.gpio_pins)

    def _gpio_set_debounce(self, payload) -> tuple[int, bytes]:
        _expect(payload, 4, "GPIO_SET_DEBOUNCE")
        self.gpio_debounce = U32.unpack_from(payload)[0]
        return RES_SUCCESS, b""

    def _gpio_pin_get_val(self, payload) -> tuple[int, bytes]:
        pin = self._pin(payload, 2, "GPIO_PIN_GET_VAL")
        level = self.gpio_out[pin] if self.gpio_dir[pin] else self.gpio_input[pin]
        return RES_SUCCESS, GPIO_PIN_VAL.pack(pin, level)

    def _gpio_pin_set_out_val(self, payload) -> tuple[int, bytes]:
        pin = self._pin(payload, 3, "GPIO_PIN_SET_OUT_VAL")
        self.gpio_out[pin] = 1 if payload[2] else 0
        return RES_SUCCESS, b""

    def _gpio_pin_get_out_val(self, payload) -> tuple[int, bytes]:
        pin = self._pin(payload, 2, "GPIO_PIN_GET_OUT_VAL")
        return RES_SUCCESS, GPIO_PIN_VAL.pack(pin, self.gpio_out[pin])

    def _gpio_pin_enable(self, payload) -> tuple[int, bytes]:
        self.gpio_on[self._pin(payload, 2, "GPIO_PIN_ENABLE")] = 1
        return RES_SUCCESS, b""

    def _gpio_pin_disable(self, payload) -> tuple[int, bytes]:
        self.gpio_on[self._pin(payload, 2, "GPIO_PIN_DISABLE")] = 0
        return RES_SUCCESS, b""

    def _gpio_pin_set_direction(self, payload) -> tuple[int, bytes]:
        pin = self._pin(payload, 3, "GPIO_PIN_SET_DIRECTION")
        if payload[2] > 1:
            raise _BadRequest(RES_INVALID_VALUE, f"direction {payload[2]}")
        self.gpio_dir[pin] = payload[2]
        return RES_SUCCESS, b""

    def _gpio_pin_get_direction(self, payload) -> tuple[int, bytes]:
        pin = self._pin(payload, 2, "GPIO_PIN_GET_DIRECTION")
        return RES_SUCCESS, GPIO_PIN_VAL.pack(pin, self.gpio_dir[pin])

    def _gpio_pin_set_event_cfg(self, payload) -> tuple[int, bytes]:
        _expect(payload, GPIO_EVENT_CFG.size, "GPIO_PIN_SET_EVENT_CFG")
        pin, kind, period = GPIO_EVENT_CFG.unpack_from(payload)
        if pin >= self.gpio_pins:
            raise _BadRequest(RES_INVALID_PIN_NUMBER, f"GPIO_PIN_SET_EVENT_CFG: pin {pin}")
        self.gpio_event_cfg[pin] = (kind, period)
        return RES_SUCCESS, b""


# --- triggers ------------------------------------------------------------------------


@dataclass
class Trigger:
    """Fire ``action`` (default: unplug) once ``module``'s ``counter`` reaches ``threshold``.

    Checked after each request of that module is handled; with
    ``withhold_reply`` the action runs instead of sending that request's reply,
    so the host is waiting on it: the provider disappears mid-operation.
    """

    module: str
    counter: str
    threshold: int
    withhold_reply: bool = True
    action: Callable[[], object] | None = None
    fired: threading.Event = field(default_factory=threading.Event)
    fired_at: dict[str, int] | None = None
    error: str | None = None


class Responder(ArmedTriggers):
    """Request bytes in, reply out through ``send``, with armed triggers checked in between."""

    def arm(self, trigger: Trigger) -> Trigger:
        if trigger.module not in MODULES:
            raise ValueError(f"module {trigger.module!r}; allowed: {', '.join(MODULES)}")
        if trigger.counter not in COUNTERS:
            raise ValueError(f"counter {trigger.counter!r}; allowed: {', '.join(COUNTERS)}")
        return super().arm(trigger)

    def serve(self, msg) -> None:
        module, reply = self.device.process(msg)
        if reply is None:
            return
        if not self.armed():
            self.send(reply)
            return
        stats = self.device.stats[module]
        due = self.take_due(
            lambda t: t.module == module and getattr(stats, t.counter) >= t.threshold
        )
        if any(t.withhold_reply for t in due):
            self.withheld += 1
        else:
            self.send(reply)
        self.fire(
            due, self.default_action, asdict(stats), lambda text: self.device.problem(module, text)
        )


# --- USB wiring ----------------------------------------------------------------------

EP_OUT, EP_IN = 0, 1  # gadget.endpoints index: ep1 = bulk OUT, ep2 = bulk IN (descriptor order)
USB_DEVICES = Path("/sys/bus/usb/devices")
I2C_DEVICES = Path("/sys/bus/i2c/devices")


def dln2_descriptors() -> bytes:
    """One vendor-specific interface (number 0, as dln2_probe requires), bulk OUT + bulk IN."""

    def one_speed(max_packet: int) -> list[bytes]:
        return [
            interface_descriptor(0, 2, USB_CLASS_VENDOR_SPEC, string=1),
            endpoint_descriptor(0x01, XFER_BULK, max_packet),
            endpoint_descriptor(0x82, XFER_BULK, max_packet),
        ]

    return descriptors_blob(one_speed(64), one_speed(512))


def dln2_gadget_config(name: str, usb_serial: str) -> GadgetConfig:
    return GadgetConfig(
        name=name,
        vendor_id=VENDOR_ID,
        product_id=PRODUCT_ID,
        manufacturer="Diolan",
        product="DLN-2 (emulated)",
        serial=usb_serial,
        descriptors=dln2_descriptors(),
        strings=strings_blob(["DLN-2"]),
        endpoints=2,
    )


def find_usb_interface(usb_serial: str, root: Path = USB_DEVICES) -> Path | None:
    """The host-side interface (e.g. .../1-1:1.0) of the plugged DLN-2 with this USB serial."""
    return gadget.find_usb_interface(usb_serial, VENDOR_ID, PRODUCT_ID, root)


def find_i2c_adapter(interface: Path) -> str | None:
    """i2c-N registered by i2c-dln2 under this interface's dln2-i2c platform device."""
    adapters = sorted(interface.glob("dln2-i2c.*/i2c-*"))
    return adapters[0].name if adapters else None


class Emulator(AdapterEmulator):
    """A Dln2Device behind a FunctionFS gadget, served by one thread.

    ``start()`` builds the gadget and starts the thread, which is blocked
    reading the OUT endpoint before ``plug()`` binds the UDC. ``arm_unplug``
    places a deterministic unplug; ``stop()`` tears everything down.
    """

    LABEL = "DLN-2"
    THREAD_NAME = "dln2-io"
    EP_OUT, EP_IN = EP_OUT, EP_IN

    def __init__(
        self,
        device: Dln2Device,
        udc: str = "dummy_udc.0",
        name: str = "dln2",
        usb_serial: str | None = None,
        gadget: FfsGadget | None = None,
    ):
        self.device = device
        self.usb_serial = usb_serial or f"harness-{name}"
        super().__init__(
            gadget
            or FfsGadget(
                dln2_gadget_config(name, self.usb_serial),
                udc,
                on_setup=self._control,
                on_event=self._on_event,
            )
        )
        self.responder = Responder(device, self._send, self.unplug)
        self._in_max_packet = 512
        self._stream = MessageStream()

    def _host_ready(self) -> Path | None:
        interface = find_usb_interface(self.usb_serial)
        return interface if interface and bound_driver(interface) == "dln2" else None

    def _host_state(self) -> str:
        interface = find_usb_interface(self.usb_serial)
        return "not enumerated" if interface is None else f"driver {bound_driver(interface)}"

    # --- triggers and counters -------------------------------------------------------

    def arm_unplug(
        self,
        module: str,
        counter: str,
        threshold: int,
        *,
        relative: bool = False,
        withhold_reply: bool = True,
        action: Callable[[], object] | None = None,
    ) -> Trigger:
        """Unplug (or run ``action``) in the emulator thread when the counter reaches threshold.

        ``relative`` counts from now: ``arm_unplug("i2c", "bytes_read", 2048, relative=True)``
        unplugs 2 KiB into the reads that follow, instead of answering that request.
        """
        if relative:
            threshold += getattr(self.device.stats[module], counter)
        return self.responder.arm(Trigger(module, counter, threshold, withhold_reply, action))

    def stats(self) -> dict:
        return {"modules": self.device.snapshot(), **self.usb_stats()}

    def wait_counter(self, module: str, counter: str, value: int, timeout: float) -> bool:
        stats = self.device.stats[module]
        return self.wait_until(lambda: getattr(stats, counter), value, timeout)

    # --- USB side --------------------------------------------------------------------

    def _power_on(self) -> None:
        self.device.reset()
        self._stream.reset()

    def _connection_lost(self) -> None:
        self._stream.reset()

    def _read_size(self) -> int:
        return self._in_max_packet

    def _on_event(self, name: str) -> None:
        if name == "ENABLE":
            full_speed = self.gadget.speed() in ("full-speed", "low-speed")
            self._in_max_packet = 64 if full_speed else 512

    def _control(self, transfer: ControlTransfer) -> None:
        self.problem(f"unexpected control request {transfer.setup}; stalled")
        transfer.stall()

    def _send(self, reply: bytes) -> None:
        if self._write_in(reply) and len(reply) % self._in_max_packet == 0:
            self._write_in(b"")  # a full last packet does not end the host's 512-byte URB
            self.zlps += 1

    def _received(self, data: memoryview) -> None:
        stream = self._stream
        dropped = stream.dropped
        for msg in stream.feed(data):
            self.responder.serve(msg)
        if stream.dropped != dropped:
            self.problem(
                f"unparseable data on the OUT endpoint, {stream.dropped} bytes dropped so far"
            )

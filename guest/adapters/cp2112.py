"""Silicon Labs CP2112 (10c4:ea90) emulated through FunctionFS, for the kernel's hid-cp2112.

The CP2112 is a USB HID device: configuration lives in feature reports read
and written with HID GET_REPORT/SET_REPORT on ep0, and SMBus/I2C transfers run
over interrupt OUT (requests) and interrupt IN (responses). Protocol facts come
from the host side in Linux 6.12 (drivers/hid/hid-cp2112.c, drivers/hid/usbhid/
hid-core.c, drivers/hid/hid-core.c):

- probe reads GET_VERSION_INFO (3 bytes) and SMBUS_CONFIG (14 bytes), writes
  SMBUS_CONFIG back with retry_time = 1, reads LOCK_BYTE (2 bytes); every
  feature request must return exactly the driver's size or probe fails;
- a transfer is one OUT report (read, write, or write-read with up to 16
  target-address bytes, the latter only if the device version is above 1),
  then up to 10 TRANSFER_STATUS_REQUESTs, each waiting 50 ms for the IN
  response; reads then send DATA_READ_FORCE_SEND for at most 61 bytes at a
  time until the length from the status response has arrived;
- status0 IDLE/BUSY/COMPLETE/ERROR become -EAGAIN/-EBUSY/length/-ETIMEDOUT
  (status1 NACK or bus timeout) or -EIO (cp2112_raw_event);
- input reports reach the driver only if their report ID is declared as an
  input report in the report descriptor, and hid-core rejects (after the
  driver saw them) reports shorter than declared, so every IN report is sent
  at its full declared 64 bytes.

usbhid fetches the report descriptor with GET_DESCRIPTOR(Report) to the
interface. composite_setup only answers device-recipient GET_DESCRIPTOR
itself; an interface-recipient one goes to the function's setup, so
FunctionFS forwards it to ep0 like the class requests and ``Cp2112Device``
answers it.

Values the driver does not interpret (busy status1 codes, default SMBus and
GPIO configuration, PROM contents, part number 0x0C) follow the CP2112 data
sheet and AN495 as this emulator's choice; they are not checked by any kernel
code.

Layers as in dln2.py: pure encode/decode functions and the report descriptor;
``Cp2112Device`` (no I/O) answers ep0 requests and OUT reports and counts work;
``Responder`` adds the unplug triggers; ``Emulator`` wires them to gadget.py.
"""

from __future__ import annotations

import errno
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from guest.adapters import gadget
from guest.adapters.gadget import (
    HID_DT_HID,
    HID_DT_REPORT,
    USB_CLASS_HID,
    XFER_INT,
    AdapterEmulator,
    ArmedTriggers,
    ControlTransfer,
    FfsGadget,
    GadgetConfig,
    bound_driver,
    descriptors_blob,
    endpoint_descriptor,
    hid_descriptor,
    interface_descriptor,
    strings_blob,
)

VENDOR_ID = 0x10C4  # USB_VENDOR_ID_CYGNAL
PRODUCT_ID = 0xEA90  # USB_DEVICE_ID_CYGNAL_CP2112
PART_NUMBER = 0x0C
DEVICE_VERSION = 0x02  # > 1: hid-cp2112 uses write-read (repeated start) only then
DRIVER = "cp2112"  # cp2112_driver.name: the HID device's driver link
ADAPTER_PREFIX = "CP2112 SMBus Bridge on hidraw"  # cp2112_probe: adap.name + hidraw minor

# report IDs (the enum at the top of hid-cp2112.c)
GPIO_CONFIG = 0x02
GPIO_GET = 0x03
GPIO_SET = 0x04
GET_VERSION_INFO = 0x05
SMBUS_CONFIG = 0x06
DATA_READ_REQUEST = 0x10
DATA_WRITE_READ_REQUEST = 0x11
DATA_READ_FORCE_SEND = 0x12
DATA_READ_RESPONSE = 0x13
DATA_WRITE_REQUEST = 0x14
TRANSFER_STATUS_REQUEST = 0x15
TRANSFER_STATUS_RESPONSE = 0x16
CANCEL_TRANSFER = 0x17
LOCK_BYTE = 0x20
USB_CONFIG = 0x21
MANUFACTURER_STRING = 0x22
PRODUCT_STRING = 0x23
SERIAL_STRING = 0x24

REPORT_NAMES = {
    GPIO_CONFIG: "GPIO_CONFIG",
    GPIO_GET: "GPIO_GET",
    GPIO_SET: "GPIO_SET",
    GET_VERSION_INFO: "GET_VERSION_INFO",
    SMBUS_CONFIG: "SMBUS_CONFIG",
    DATA_READ_REQUEST: "DATA_READ_REQUEST",
    DATA_WRITE_READ_REQUEST: "DATA_WRITE_READ_REQUEST",
    DATA_READ_FORCE_SEND: "DATA_READ_FORCE_SEND",
    DATA_READ_RESPONSE: "DATA_READ_RESPONSE",
    DATA_WRITE_REQUEST: "DATA_WRITE_REQUEST",
    TRANSFER_STATUS_REQUEST: "TRANSFER_STATUS_REQUEST",
    TRANSFER_STATUS_RESPONSE: "TRANSFER_STATUS_RESPONSE",
    CANCEL_TRANSFER: "CANCEL_TRANSFER",
    LOCK_BYTE: "LOCK_BYTE",
    USB_CONFIG: "USB_CONFIG",
    MANUFACTURER_STRING: "MANUFACTURER_STRING",
    PRODUCT_STRING: "PRODUCT_STRING",
    SERIAL_STRING: "SERIAL_STRING",
}

STATUS0_IDLE = 0x00
STATUS0_BUSY = 0x01
STATUS0_COMPLETE = 0x02
STATUS0_ERROR = 0x03
# status1 with ERROR (hid-cp2112.c enum); SUCCESS is what this emulator sends with COMPLETE
STATUS1_TIMEOUT_NACK = 0x00
STATUS1_TIMEOUT_BUS = 0x01
STATUS1_ARBITRATION_LOST = 0x02
STATUS1_READ_INCOMPLETE = 0x03
STATUS1_WRITE_INCOMPLETE = 0x04
STATUS1_SUCCESS = 0x05
# status1 with BUSY (AN495; the driver ignores it)
BUSY1_ADDRESS_ACKED = 0x00
BUSY1_ADDRESS_NACKED = 0x01
BUSY1_READING = 0x02
BUSY1_WRITING = 0x03

REPORT_SIZE = 64  # CP2112_REPORT_MAX_LENGTH: every interrupt report, ID byte included
READ_CHUNK = 61  # cp2112_device.read_data[61]: data bytes per DATA_READ_RESPONSE
HISTORY = 12  # reports and events a protocol problem quotes
TRACED = 8  # leading bytes of a report kept in the history
WRITE_MAX = 61  # cp2112_write_req_report.data[61]
READ_MAX = 512  # cp2112_read_req / cp2112_i2c_write_read_req reject longer reads
TARGET_ADDRESS_MAX = 16  # cp2112_write_read_req_report.target_address[16]
STRING_CHARS = 30  # cp2112_string_report.string[30], UTF-16 code units
USB_DT_STRING = 0x03

# feature report sizes in bytes, ID included, as hid-cp2112 passes them to hid_hw_raw_request
FEATURE_SIZES = {
    GPIO_CONFIG: 5,  # CP2112_GPIO_CONFIG_LENGTH
    GPIO_GET: 2,  # CP2112_GPIO_GET_LENGTH
    GPIO_SET: 3,  # CP2112_GPIO_SET_LENGTH
    GET_VERSION_INFO: 3,  # u8 buf[3] in cp2112_probe
    SMBUS_CONFIG: 14,  # sizeof(struct cp2112_smbus_config_report)
    LOCK_BYTE: 2,  # u8 buf[2] in chmod_sysfs_attrs
    USB_CONFIG: 10,  # sizeof(struct cp2112_usb_config_report)
    MANUFACTURER_STRING: 63,  # sizeof(cp2112_string_report.contents)
    PRODUCT_STRING: 63,
    SERIAL_STRING: 63,
}
FEATURE_GETTABLE = frozenset(FEATURE_SIZES) - {GPIO_SET}
FEATURE_SETTABLE = frozenset(FEATURE_SIZES) - {GPIO_GET, GET_VERSION_INFO}
OUTPUT_IDS = (
    DATA_READ_REQUEST,
    DATA_WRITE_READ_REQUEST,
    DATA_READ_FORCE_SEND,
    DATA_WRITE_REQUEST,
    TRANSFER_STATUS_REQUEST,
    CANCEL_TRANSFER,
)
INPUT_IDS = (DATA_READ_RESPONSE, TRANSFER_STATUS_RESPONSE)
STRING_IDS = (MANUFACTURER_STRING, PRODUCT_STRING, SERIAL_STRING)

FEATURE, INPUT, OUTPUT = "feature", "input", "output"
REPORTS: tuple[tuple[int, str, int], ...] = (
    *((rid, FEATURE, size) for rid, size in sorted(FEATURE_SIZES.items())),
    *((rid, OUTPUT, REPORT_SIZE) for rid in OUTPUT_IDS),
    *((rid, INPUT, REPORT_SIZE) for rid in INPUT_IDS),
)

# HID class requests (include/uapi/linux/hid.h) and wValue's high byte (report type + 1)
HID_REQ_GET_REPORT = 0x01
HID_REQ_SET_REPORT = 0x09
HID_REQ_SET_IDLE = 0x0A
REPORT_TYPE_INPUT = 1
REPORT_TYPE_OUTPUT = 2
REPORT_TYPE_FEATURE = 3
USB_REQ_GET_DESCRIPTOR = 0x06
RT_GET_DESCRIPTOR_INTERFACE = 0x81  # IN | standard | interface
RT_CLASS_INTERFACE_IN = 0xA1
RT_CLASS_INTERFACE_OUT = 0x21

READ_REQUEST = struct.Struct(">BBH")  # report, slave address << 1, be16 length
WRITE_READ_HEADER = struct.Struct(">BBHB")  # ... + target_address_length
FORCE_SEND = struct.Struct(">BH")  # report, be16 length
STATUS = struct.Struct(">BBBHH")  # report, status0, status1, be16 retries, be16 length
SMBUS_CONFIG_REPORT = struct.Struct(">BIBBHHBH")
USB_CONFIG_REPORT = struct.Struct("<BHHBBBBB")
GPIO_CONFIG_REPORT = struct.Struct("BBBBB")  # report, direction, push-pull, special, divider

# lock byte bits and USB_CONFIG mask bits, in the order of hid-cp2112's sysfs attributes
LOCK_VID, LOCK_PID, LOCK_MAX_POWER, LOCK_POWER_MODE, LOCK_RELEASE = (1 << n for n in range(5))
LOCK_STRINGS = {MANUFACTURER_STRING: 0x20, PRODUCT_STRING: 0x40, SERIAL_STRING: 0x80}


# --- report descriptor ---------------------------------------------------------------

_MAIN_ITEM = {INPUT: 0x81, OUTPUT: 0x91, FEATURE: 0xB1}  # tag 8/9/11, one data byte


def report_descriptor() -> bytes:
    """Vendor-page application collection declaring every report ID with the driver's size.

    Each report is Report ID, Report Count = size - 1 bytes of 8 bits, one
    vendor usage, then Input/Output/Feature (Data, Var, Abs).
    """
    items = bytearray(
        b"\x06\x00\xff"  # Usage Page (Vendor 0xFF00)
        b"\x09\x01"  # Usage (1)
        b"\xa1\x01"  # Collection (Application)
        b"\x15\x00"  # Logical Minimum (0)
        b"\x26\xff\x00"  # Logical Maximum (255)
        b"\x75\x08"  # Report Size (8)
    )
    for rid, kind, size in REPORTS:
        items += bytes((0x85, rid, 0x95, size - 1, 0x09, 0x01, _MAIN_ITEM[kind], 0x02))
    items += b"\xc0"  # End Collection
    return bytes(items)


REPORT_DESCRIPTOR = report_descriptor()


# --- host -> device: what hid-cp2112 builds ------------------------------------------


def encode_read_request(address: int, length: int) -> bytes:
    """cp2112_read_req: 4 bytes."""
    return READ_REQUEST.pack(DATA_READ_REQUEST, address << 1, length)


def encode_write_read_request(address: int, target: bytes, length: int) -> bytes:
    """cp2112_i2c_write_read_req: target-address bytes, then a repeated-start read."""
    header = WRITE_READ_HEADER.pack(DATA_WRITE_READ_REQUEST, address << 1, length, len(target))
    return header + bytes(target)


def encode_write_request(address: int, data: bytes) -> bytes:
    """cp2112_i2c_write_req: data_length + 3 bytes."""
    return bytes((DATA_WRITE_REQUEST, address << 1, len(data))) + bytes(data)


def encode_force_send(length: int) -> bytes:
    """cp2112_read: DATA_READ_FORCE_SEND with at most 61 bytes asked."""
    return FORCE_SEND.pack(DATA_READ_FORCE_SEND, length)


def encode_status_request() -> bytes:
    """cp2112_xfer_status."""
    return bytes((TRANSFER_STATUS_REQUEST, 0x01))


def encode_cancel() -> bytes:
    """cp2112_i2c_xfer / cp2112_xfer after 10 busy status answers."""
    return bytes((CANCEL_TRANSFER, 0x01))


def decode_read_request(report) -> tuple[int, int]:
    """(7-bit address, length)."""
    _, address, length = READ_REQUEST.unpack_from(report)
    return address >> 1, length


def decode_write_read_request(report) -> tuple[int, int, bytes]:
    """(7-bit address, read length, target-address bytes); ValueError if cut short."""
    _, address, length, count = WRITE_READ_HEADER.unpack_from(report)
    target = bytes(report[WRITE_READ_HEADER.size : WRITE_READ_HEADER.size + count])
    if len(target) != count:
        raise ValueError(f"{count} target-address bytes announced, {len(target)} present")
    return address >> 1, length, target


def decode_write_request(report) -> tuple[int, bytes]:
    """(7-bit address, data); ValueError if cut short."""
    address, count = report[1], report[2]
    data = bytes(report[3 : 3 + count])
    if len(data) != count:
        raise ValueError(f"{count} data bytes announced, {len(data)} present")
    return address >> 1, data


def decode_force_send(report) -> int:
    return FORCE_SEND.unpack_from(report)[1]


# --- device -> host ------------------------------------------------------------------


def _pad(report: bytes, size: int = REPORT_SIZE) -> bytes:
    return report + bytes(size - len(report))


def encode_status_response(status0: int, status1: int, retries: int, length: int) -> bytes:
    """TRANSFER_STATUS_RESPONSE at its declared 64 bytes."""
    return _pad(STATUS.pack(TRANSFER_STATUS_RESPONSE, status0, status1, retries, length))


def decode_status_response(report) -> tuple[int, int, int, int]:
    """(status0, status1, retries, length) as cp2112_raw_event reads them."""
    return STATUS.unpack_from(report)[1:]


def encode_read_response(status: int, data: bytes) -> bytes:
    """DATA_READ_RESPONSE: status, length, up to 61 data bytes, padded to 64."""
    if len(data) > READ_CHUNK:
        raise ValueError(f"{len(data)} bytes in one read response (at most {READ_CHUNK})")
    return _pad(bytes((DATA_READ_RESPONSE, status, len(data))) + bytes(data))


def decode_read_response(report) -> tuple[int, bytes]:
    """(status, data) as cp2112_raw_event reads them (length byte capped at 61)."""
    length = min(report[2], READ_CHUNK)
    return report[1], bytes(report[3 : 3 + length])


def host_xfer_status(report) -> int:
    """What cp2112_raw_event makes of a status response: a length or a negative errno."""
    status0, status1, _retries, length = decode_status_response(report)
    if status0 == STATUS0_IDLE:
        return -errno.EAGAIN
    if status0 == STATUS0_BUSY:
        return -errno.EBUSY
    if status0 == STATUS0_COMPLETE:
        return length
    if status0 == STATUS0_ERROR:
        if status1 in (STATUS1_TIMEOUT_NACK, STATUS1_TIMEOUT_BUS):
            return -errno.ETIMEDOUT
        return -errno.EIO
    return -errno.EINVAL


# --- feature reports -----------------------------------------------------------------


def encode_version(part_number: int = PART_NUMBER, version: int = DEVICE_VERSION) -> bytes:
    return bytes((GET_VERSION_INFO, part_number, version))


@dataclass
class SmbusConfig:
    """struct cp2112_smbus_config_report; defaults are AN495's power-on values."""

    clock_speed: int = 100_000
    device_address: int = 0x02
    auto_send_read: int = 0
    write_timeout: int = 0
    read_timeout: int = 0
    scl_low_timeout: int = 0
    retry_time: int = 0

    def encode(self) -> bytes:
        return SMBUS_CONFIG_REPORT.pack(
            SMBUS_CONFIG,
            self.clock_speed,
            self.device_address,
            self.auto_send_read,
            self.write_timeout,
            self.read_timeout,
            self.scl_low_timeout,
            self.retry_time,
        )

    @classmethod
    def decode(cls, report) -> SmbusConfig:
        return cls(*SMBUS_CONFIG_REPORT.unpack_from(report)[1:])


@dataclass
class UsbConfig:
    """struct cp2112_usb_config_report: the PROM's USB identity (little endian)."""

    vid: int = VENDOR_ID
    pid: int = PRODUCT_ID
    max_power: int = 50  # 2 mA units: 100 mA, as the gadget's MaxPower
    power_mode: int = 0  # bus powered
    release_major: int = 1
    release_minor: int = 0

    def encode(self, mask: int = 0) -> bytes:
        return USB_CONFIG_REPORT.pack(
            USB_CONFIG,
            self.vid,
            self.pid,
            self.max_power,
            self.power_mode,
            self.release_major,
            self.release_minor,
            mask,
        )

    @classmethod
    def decode(cls, report) -> tuple[UsbConfig, int]:
        """(fields, mask of the fields to program)."""
        fields = USB_CONFIG_REPORT.unpack_from(report)
        return cls(*fields[1:7]), fields[7]


def encode_gpio_config(direction: int, push_pull: int, special: int, divider: int) -> bytes:
    return GPIO_CONFIG_REPORT.pack(GPIO_CONFIG, direction, push_pull, special, divider)


def encode_gpio_set(value: int, mask: int) -> bytes:
    """cp2112_gpio_set: [report, value (all ones or zero), BIT(offset)]."""
    return bytes((GPIO_SET, value, mask))


def encode_string_report(report_id: int, text: str) -> bytes:
    """[report, length of everything after the report byte, USB_DT_STRING, UTF-16LE]."""
    raw = text.encode("utf-16-le")[: 2 * STRING_CHARS]
    return bytes((report_id, len(raw) + 2, USB_DT_STRING)) + raw


def decode_string_report(report) -> str:
    """The text of a string feature report, as pstr_show cuts it."""
    length = min(report[1], len(report) - 1)
    return bytes(report[3 : 1 + length]).decode("utf-16-le", "replace")


# --- the device ----------------------------------------------------------------------


@dataclass
class Stats:
    reports: int = 0  # interrupt OUT (and SET_REPORT(Output)) reports handled
    features: int = 0  # feature GET/SET requests on ep0
    transfers: int = 0  # I2C transfers the target ACKed (read, write, write-read)
    nacks: int = 0  # NACKed bus attempts (absent address, EEPROM write cycle)
    bytes_read: int = 0  # data bytes delivered to the host in DATA_READ_RESPONSEs
    bytes_written: int = 0  # bytes put on the bus: write data and write-read target address
    status_polls: int = 0
    busy_replies: int = 0  # status responses saying BUSY
    force_sends: int = 0
    cancels: int = 0
    discarded_bytes: int = 0  # read data never fetched: cancelled or replaced by a new request
    errors: int = 0  # malformed or unsupported requests (also in problems)


STAT_FIELDS = tuple(Stats.__dataclass_fields__)
COUNTERS = (*STAT_FIELDS, *REPORT_NAMES.values())


class Cp2112Device:
    """The CP2112 firmware as hid-cp2112 sees it: ep0 requests and OUT reports in, reports out.

    ``i2c`` maps 7-bit addresses to targets with ``i2c_write(data) -> bool``
    and ``i2c_read(length) -> bytes | None`` (False/None = NACK; absent
    addresses NACK), like chipmodels.Eeprom. A transfer runs on the bus when
    its request arrives; its outcome is reported after ``busy_polls`` status
    requests answered BUSY. A NACK is retried ``retry_time`` times in all
    (SMBus configuration; hid-cp2112 sets 1), then reported as ERROR/
    TIMEOUT_NACK, which the driver turns into -ETIMEDOUT; with retry_time 0
    ("no limit") the chip stays BUSY and retries at every status request.

    The PROM (USB_CONFIG fields, strings, lock byte) is one-time programmable:
    a field is written only while its lock bit is 1, which programming clears.
    It survives ``reset()``; SMBus and GPIO configuration do not. Requests the
    driver never sends (malformed, unknown IDs, force send without data) are
    still answered the way a chip would and are recorded in ``problems``.
    """

    def __init__(
        self,
        *,
        i2c: dict | None = None,
        part_number: int = PART_NUMBER,
        version: int = DEVICE_VERSION,
        busy_polls: int = 0,
        manufacturer: str = "Silicon Laboratories",
        product: str = "CP2112 HID USB-to-SMBus Bridge",
        serial: str = "0001",
        gpio_input: int = 0xFF,
    ):
        self.i2c = dict(i2c or {})
        self.busy_polls = busy_polls
        self.gpio_input = gpio_input  # levels external signals drive on input pins
        self.stats = Stats()
        self.by_report: Counter[str] = Counter()
        self.problem_count = 0
        self.problems: deque[str] = deque(maxlen=16)
        self.history: deque[str] = deque(maxlen=HISTORY)  # the last reports, for problem texts
        self.usb_config = UsbConfig()
        self.strings = {
            MANUFACTURER_STRING: manufacturer,
            PRODUCT_STRING: product,
            SERIAL_STRING: serial,
        }
        self.lock_byte = 0xFF  # all PROM fields unprogrammed
        self._version = encode_version(part_number, version)
        self._lock = threading.Lock()
        for target in self.i2c.values():
            if hasattr(target, "report"):
                target.report = self.problem
        self._out = {
            DATA_READ_REQUEST: self._read_request,
            DATA_WRITE_READ_REQUEST: self._write_read_request,
            DATA_WRITE_REQUEST: self._write_request,
            DATA_READ_FORCE_SEND: self._force_send,
            TRANSFER_STATUS_REQUEST: self._status_request,
            CANCEL_TRANSFER: self._cancel,
        }
        self.reset()

    def reset(self) -> None:
        """Power cycle: no transfer, power-on SMBus/GPIO configuration; PROM and chips keep."""
        self.smbus = SmbusConfig()
        self.gpio_direction = 0x00  # all inputs
        self.gpio_push_pull = 0x00
        self.gpio_special = 0x00
        self.gpio_divider = 0x00
        self.gpio_latch = 0xFF
        self.note("reset")
        self._idle()
        for target in self.i2c.values():
            if hasattr(target, "power_cycle"):
                target.power_cycle()

    def _idle(self) -> None:
        self.state = STATUS0_IDLE
        self.status1 = 0
        self.retries = 0
        self.xfer_length = 0
        self._op: tuple[str, int, bytes, int] | None = None
        self._data = b""
        self._pos = 0
        self._busy_left = 0

    # --- bookkeeping -----------------------------------------------------------------

    def problem(self, message: str) -> None:
        self.problem_count += 1
        self.problems.append(message)

    def note(self, event: str) -> None:
        """Add to the traffic history a protocol problem quotes (reports, resets, drops)."""
        self.history.append(f"{time.monotonic():.3f} {event}")

    def _violation(self, message: str) -> None:
        """A request the driver should not have sent here, with the traffic that led to it."""
        self._error(f"{message}; after: {' | '.join(self.history)}")

    def _error(self, message: str) -> None:
        self.stats.errors += 1
        self.problem(message)

    def counter(self, name: str) -> int:
        """A Stats field, or how often the host sent the report of that name."""
        if name in STAT_FIELDS:
            return getattr(self.stats, name)
        return self.by_report[name]

    def snapshot(self) -> dict:
        return {**asdict(self.stats), "by_report": dict(self.by_report)}

    @property
    def pending(self) -> int:
        """Read data the host has not fetched yet."""
        return len(self._data) - self._pos

    # --- ep0 -------------------------------------------------------------------------

    def control(self, transfer: ControlTransfer) -> list[bytes]:
        """Answer one SETUP from ep0; returns IN reports that a SET_REPORT(Output) produced."""
        setup = transfer.setup
        kind, rid = setup.value >> 8, setup.value & 0xFF
        rtype, request = setup.request_type, setup.request
        if rtype == RT_GET_DESCRIPTOR_INTERFACE and request == USB_REQ_GET_DESCRIPTOR:
            if kind == HID_DT_REPORT:
                transfer.reply(REPORT_DESCRIPTOR)
                return []
            if kind == HID_DT_HID:
                transfer.reply(hid_descriptor(len(REPORT_DESCRIPTOR)))
                return []
        elif rtype == RT_CLASS_INTERFACE_IN and request == HID_REQ_GET_REPORT:
            if kind == REPORT_TYPE_FEATURE:
                with self._lock:
                    data = self.get_feature(rid)
                if data is not None:
                    transfer.reply(data)
                    return []
        elif rtype == RT_CLASS_INTERFACE_OUT and request == HID_REQ_SET_REPORT:
            if kind in (REPORT_TYPE_FEATURE, REPORT_TYPE_OUTPUT) and setup.length:
                data = transfer.receive()
                if data[:1] != bytes((rid,)):
                    with self._lock:
                        self._error(f"SET_REPORT {rid:#04x} with data starting {data[:1].hex()}")
                    return []
                if kind == REPORT_TYPE_OUTPUT:
                    return self.interrupt_out(data)
                with self._lock:
                    self.set_feature(data)
                return []
        elif rtype == RT_CLASS_INTERFACE_OUT and request == HID_REQ_SET_IDLE:
            if not setup.length:
                transfer.ack()  # usbhid_parse sends SET_IDLE(0) before the descriptor fetch
                return []
        with self._lock:
            self._error(f"unsupported control request {setup}; stalled")
        transfer.stall()
        return []

    def get_feature(self, rid: int) -> bytes | None:
        """A feature report at its full size, or None (stall) for IDs that cannot be read."""
        self.stats.features += 1
        self.by_report[REPORT_NAMES.get(rid, f"{rid:#04x}")] += 1
        if rid not in FEATURE_GETTABLE:
            return None
        if rid == GET_VERSION_INFO:
            return self._version
        if rid == SMBUS_CONFIG:
            return self.smbus.encode()
        if rid == GPIO_CONFIG:
            return encode_gpio_config(
                self.gpio_direction, self.gpio_push_pull, self.gpio_special, self.gpio_divider
            )
        if rid == GPIO_GET:
            levels = self.gpio_latch & self.gpio_direction
            levels |= self.gpio_input & ~self.gpio_direction & 0xFF
            return bytes((GPIO_GET, levels))
        if rid == LOCK_BYTE:
            return bytes((LOCK_BYTE, self.lock_byte))
        if rid == USB_CONFIG:
            return self.usb_config.encode()
        return _pad(encode_string_report(rid, self.strings[rid]), FEATURE_SIZES[rid])

    def set_feature(self, data: bytes) -> None:
        """Apply a SET_REPORT(Feature); malformed or read-only reports are recorded, ignored."""
        rid = data[0]
        self.stats.features += 1
        self.by_report[REPORT_NAMES.get(rid, f"{rid:#04x}")] += 1
        if rid not in FEATURE_SETTABLE:
            self._error(f"SET_REPORT of feature {rid:#04x}, which cannot be written")
            return
        needed = 3 if rid in STRING_IDS else FEATURE_SIZES[rid]
        if len(data) < needed:
            self._error(f"{REPORT_NAMES[rid]}: {len(data)}-byte SET_REPORT, {needed} needed")
            return
        if rid == SMBUS_CONFIG:
            self.smbus = SmbusConfig.decode(data)
        elif rid == GPIO_CONFIG:
            _, direction, push_pull, special, divider = GPIO_CONFIG_REPORT.unpack_from(data)
            self.gpio_direction, self.gpio_push_pull = direction, push_pull
            self.gpio_special, self.gpio_divider = special, divider
        elif rid == GPIO_SET:
            value, mask = data[1], data[2]
            self.gpio_latch = (self.gpio_latch & ~mask | value & mask) & 0xFF
        elif rid == LOCK_BYTE:
            self.lock_byte &= data[1]
        elif rid == USB_CONFIG:
            self._program_usb_config(data)
        else:
            self._program_string(rid, data)

    def _program_usb_config(self, data: bytes) -> None:
        new, mask = UsbConfig.decode(data)
        old = self.usb_config
        for bit, names in (
            (LOCK_VID, ("vid",)),
            (LOCK_PID, ("pid",)),
            (LOCK_MAX_POWER, ("max_power",)),
            (LOCK_POWER_MODE, ("power_mode",)),
            (LOCK_RELEASE, ("release_major", "release_minor")),
        ):
            if mask & bit and self.lock_byte & bit:
                for name in names:
                    setattr(old, name, getattr(new, name))
                self.lock_byte &= ~bit

    def _program_string(self, rid: int, data: bytes) -> None:
        bit = LOCK_STRINGS[rid]
        if self.lock_byte & bit:
            self.strings[rid] = decode_string_report(data)
            self.lock_byte &= ~bit

    # --- interrupt OUT ---------------------------------------------------------------

    def interrupt_out(self, report) -> list[bytes]:
        """One OUT report (bytes or memoryview) -> the IN reports to send, in order."""
        if not len(report):
            with self._lock:
                self._error("empty OUT report")
            return []
        rid = report[0]
        with self._lock:
            self.stats.reports += 1
            self.by_report[REPORT_NAMES.get(rid, f"{rid:#04x}")] += 1
            handler = self._out.get(rid)
            if handler is None:
                self._error(f"OUT report {rid:#04x} is not a request; ignored")
                return []
            self.note(f"> {bytes(report[:TRACED]).hex()}")
            try:
                replies = handler(report)
            except (ValueError, struct.error) as exc:
                self._error(f"{REPORT_NAMES[rid]}: {len(report)}-byte report: {exc}; ignored")
                return []
            for reply in replies:
                self.note(f"< {reply[:TRACED].hex()}")
            return replies

    def _read_request(self, report) -> list[bytes]:
        address, length = decode_read_request(report)
        if not 1 <= length <= READ_MAX:
            raise ValueError(f"read length {length}")
        return self._start("read", address, b"", length)

    def _write_read_request(self, report) -> list[bytes]:
        address, length, target = decode_write_read_request(report)
        if not 1 <= length <= READ_MAX:
            raise ValueError(f"read length {length}")
        if not 1 <= len(target) <= TARGET_ADDRESS_MAX:
            raise ValueError(f"{len(target)} target-address bytes")
        return self._start("write-read", address, target, length)

    def _write_request(self, report) -> list[bytes]:
        address, data = decode_write_request(report)
        if not 1 <= len(data) <= WRITE_MAX:
            raise ValueError(f"write length {len(data)}")
        return self._start("write", address, data, 0)

    def _bus(self, kind: str, address: int, write: bytes, length: int) -> bytes | None:
        """One attempt on the I2C bus: the data read (b"" for a write), None on NACK."""
        target = self.i2c.get(address)
        if target is None:
            return None
        if kind == "read":
            return target.i2c_read(length)
        if not target.i2c_write(write):
            return None
        if kind == "write":
            return b""
        return target.i2c_read(length)

    def _attempt(self) -> bool:
        """Run the current operation once; on ACK it becomes the completed transfer."""
        kind, address, write, length = self._op
        data = self._bus(kind, address, write, length)
        if data is None:
            self.stats.nacks += 1
            return False
        stats = self.stats
        stats.transfers += 1
        stats.bytes_written += len(write)
        self.state = STATUS0_COMPLETE
        self.status1 = STATUS1_SUCCESS
        self.xfer_length = len(data)
        self._data = data
        self._pos = 0
        return True

    def _start(self, kind: str, address: int, write: bytes, length: int) -> list[bytes]:
        if self.pending:
            self.stats.discarded_bytes += self.pending
        self._idle()
        self._op = (kind, address, write, length)
        self._busy_left = self.busy_polls
        limit = self.smbus.retry_time
        attempts = 1
        while not self._attempt():
            if limit and attempts >= limit:
                self.state = STATUS0_ERROR
                self.status1 = STATUS1_TIMEOUT_NACK
                self.retries = attempts - 1
                return []
            if not limit:
                self.state = STATUS0_BUSY
                self.status1 = BUSY1_ADDRESS_NACKED
                return []
            attempts += 1
        self.retries = attempts - 1
        return self._auto_send() if self._busy_left == 0 else []

    def _auto_send(self) -> list[bytes]:
        """With auto_send_read set the chip pushes read data without force sends."""
        if not self.smbus.auto_send_read or not self.pending:
            return []
        replies = []
        while self.pending:
            replies.append(self._chunk(READ_CHUNK))
        return replies

    def _chunk(self, length: int) -> bytes:
        end = min(self._pos + length, self._pos + READ_CHUNK, len(self._data))
        data = self._data[self._pos : end]
        self._pos = end
        self.stats.bytes_read += len(data)
        return encode_read_response(self.state, data)

    def _status_request(self, report) -> list[bytes]:
        self.stats.status_polls += 1
        if self._busy_left:
            self._busy_left -= 1
            self.stats.busy_replies += 1
            writing = self._op is not None and self._op[0] == "write"
            status1 = BUSY1_WRITING if writing else BUSY1_READING
            return [encode_status_response(STATUS0_BUSY, status1, 0, 0)]
        if self.state == STATUS0_BUSY:  # NACKed with retry_time 0: every poll tries again
            self.retries += 1
            self._attempt()
        replies = self._auto_send()
        if self.state == STATUS0_BUSY:
            self.stats.busy_replies += 1
        length = self.xfer_length if self.state == STATUS0_COMPLETE else 0
        replies.append(encode_status_response(self.state, self.status1, self.retries, length))
        return replies

    def _force_send(self, report) -> list[bytes]:
        self.stats.force_sends += 1
        length = decode_force_send(report)
        if self._busy_left or not self.pending:
            self._violation(
                f"DATA_READ_FORCE_SEND({length}) with no read data ready (state {self.state})"
            )
            return [encode_read_response(STATUS0_BUSY if self._busy_left else self.state, b"")]
        return [self._chunk(length)]

    def _cancel(self, report) -> list[bytes]:
        self.stats.cancels += 1
        self.stats.discarded_bytes += self.pending
        self._idle()
        return []


# --- triggers ------------------------------------------------------------------------


@dataclass
class Trigger:
    """Fire ``action`` (default: unplug) once ``counter`` reaches ``threshold``.

    ``counter`` is a Stats field or a report name (how often the host sent
    it). Checked after each interrupt OUT report is handled (not on ep0, so
    an unplug never runs inside a control transfer); with ``withhold_reply``
    the action runs instead of sending that report's answer, so the host is
    waiting on it: the provider disappears mid-transfer.
    """

    counter: str
    threshold: int
    withhold_reply: bool = True
    action: Callable[[], object] | None = None
    fired: threading.Event = field(default_factory=threading.Event)
    fired_at: dict | None = None
    error: str | None = None


class Responder(ArmedTriggers):
    """OUT reports in, IN reports out through ``send``, with armed triggers checked in between."""

    def arm(self, trigger: Trigger) -> Trigger:
        if trigger.counter not in COUNTERS:
            raise ValueError(f"counter {trigger.counter!r}; allowed: {', '.join(COUNTERS)}")
        return super().arm(trigger)

    def serve(self, report) -> None:
        replies = self.device.interrupt_out(report)
        if not self.armed():
            for reply in replies:
                self.send(reply)
            return
        counter = self.device.counter
        due = self.take_due(lambda t: counter(t.counter) >= t.threshold)
        if replies and any(t.withhold_reply for t in due):
            self.withheld += len(replies)
        else:
            for reply in replies:
                self.send(reply)
        self.fire(due, self.default_action, self.device.snapshot(), self.device.problem)


# --- USB wiring ----------------------------------------------------------------------

EP_IN, EP_OUT = 0, 1  # gadget.endpoints index: ep1 = interrupt IN, ep2 = interrupt OUT
MAX_PACKET = 64  # one report per packet; a read of exactly this size ends at every report
USB_DEVICES = Path("/sys/bus/usb/devices")
I2C_DEVICES = Path("/sys/bus/i2c/devices")
HID_NAME_GLOB = f"0003:{VENDOR_ID:04X}:{PRODUCT_ID:04X}.*"  # hid_add_device: bus:vendor:product.id


def cp2112_descriptors(report_length: int = len(REPORT_DESCRIPTOR)) -> bytes:
    """One HID interface: HID class descriptor, interrupt IN and OUT of 64 bytes (1 ms)."""

    def one_speed(interval: int) -> list[bytes]:
        return [
            interface_descriptor(0, 2, USB_CLASS_HID, string=1),
            hid_descriptor(report_length),
            endpoint_descriptor(0x81, XFER_INT, MAX_PACKET, interval),
            endpoint_descriptor(0x02, XFER_INT, MAX_PACKET, interval),
        ]

    return descriptors_blob(one_speed(1), one_speed(4))  # high speed: 2^(4-1) x 125 us


def cp2112_gadget_config(name: str, usb_serial: str, device: Cp2112Device) -> GadgetConfig:
    return GadgetConfig(
        name=name,
        vendor_id=VENDOR_ID,
        product_id=PRODUCT_ID,
        manufacturer=device.strings[MANUFACTURER_STRING],
        product=device.strings[PRODUCT_STRING],
        serial=usb_serial,
        descriptors=cp2112_descriptors(),
        strings=strings_blob(["CP2112 HID"]),
        endpoints=2,
    )


def find_usb_interface(usb_serial: str, root: Path = USB_DEVICES) -> Path | None:
    """The host-side interface (e.g. .../1-1:1.0) of the plugged CP2112 with this USB serial."""
    return gadget.find_usb_interface(usb_serial, VENDOR_ID, PRODUCT_ID, root)


def find_hid_device(interface: Path) -> Path | None:
    """The HID device usbhid created under the interface (0003:10C4:EA90.NNNN)."""
    found = sorted(interface.glob(HID_NAME_GLOB))
    return found[0] if found else None


def find_i2c_adapter(interface: Path) -> str | None:
    """i2c-N that hid-cp2112 registered under this interface's HID device."""
    for adapter in sorted(interface.glob(f"{HID_NAME_GLOB}/i2c-*")):
        try:
            name = (adapter / "name").read_text().strip()
        except OSError:
            continue
        if name.startswith(ADAPTER_PREFIX):
            return adapter.name
    return None


def find_i2c_adapters(root: Path = I2C_DEVICES) -> list[str]:
    """Every CP2112 adapter on the system, by the name hid-cp2112 gives it."""
    adapters = []
    for adapter in sorted(root.glob("i2c-*")):
        try:
            name = (adapter / "name").read_text().strip()
        except OSError:
            continue
        if name.startswith(ADAPTER_PREFIX):
            adapters.append(adapter.name)
    return adapters


def find_gpiochip(interface: Path) -> str | None:
    """gpiochipN (label cp2112_gpio) that hid-cp2112 registered under the HID device."""
    found = sorted(interface.glob(f"{HID_NAME_GLOB}/gpiochip*"))
    return found[0].name if found else None


class Emulator(AdapterEmulator):
    """A Cp2112Device behind a FunctionFS gadget: ep0 by the gadget's thread, interrupt by ours.

    ``start()`` builds the gadget and starts the thread, which is blocked
    reading the OUT endpoint before ``plug()`` binds the UDC. ``arm_unplug``
    places a deterministic unplug; ``stop()`` tears everything down.
    """

    LABEL = "CP2112"
    THREAD_NAME = "cp2112-io"
    EP_OUT, EP_IN = EP_OUT, EP_IN
    READ_BUFFER = MAX_PACKET  # one report per packet; a read of exactly this size ends at each

    def __init__(
        self,
        device: Cp2112Device,
        udc: str = "dummy_udc.0",
        name: str = "cp2112",
        usb_serial: str | None = None,
        gadget: FfsGadget | None = None,
    ):
        self.device = device
        self.usb_serial = usb_serial or f"harness-{name}"
        super().__init__(
            gadget
            or FfsGadget(
                cp2112_gadget_config(name, self.usb_serial, device), udc, on_setup=self._control
            )
        )
        self.responder = Responder(device, self._send, self.unplug)
        self._send_lock = threading.Lock()

    def _host_ready(self) -> Path | None:
        """The interface once hid-cp2112 is bound and its I2C adapter exists."""
        interface = find_usb_interface(self.usb_serial)
        hid = find_hid_device(interface) if interface is not None else None
        if hid is not None and bound_driver(hid) == DRIVER and find_i2c_adapter(interface):
            return interface
        return None

    def _host_state(self) -> str:
        interface = find_usb_interface(self.usb_serial)
        hid = find_hid_device(interface) if interface is not None else None
        if interface is None:
            return "not enumerated"
        if hid is None:
            return f"interface driver {bound_driver(interface)}, no HID device"
        return f"HID driver {bound_driver(hid)}, adapter {find_i2c_adapter(interface)}"

    # --- triggers and counters -------------------------------------------------------

    def arm_unplug(
        self,
        counter: str,
        threshold: int,
        *,
        relative: bool = False,
        withhold_reply: bool = True,
        action: Callable[[], object] | None = None,
    ) -> Trigger:
        """Unplug (or run ``action``) in the emulator thread when the counter reaches threshold.

        ``relative`` counts from now: ``arm_unplug("bytes_read", 2048, relative=True)``
        unplugs 2 KiB into the reads that follow, instead of sending that response.
        """
        if relative:
            threshold += self.device.counter(counter)
        return self.responder.arm(Trigger(counter, threshold, withhold_reply, action))

    def stats(self) -> dict:
        return {"device": self.device.snapshot(), **self.usb_stats()}

    def wait_counter(self, counter: str, value: int, timeout: float) -> bool:
        return self.wait_until(lambda: self.device.counter(counter), value, timeout)

    # --- USB side --------------------------------------------------------------------

    def _control(self, transfer: ControlTransfer) -> None:
        replies = self.device.control(transfer)
        if not replies:
            return
        if not self._send_lock.acquire(timeout=1.0):
            self.dropped_replies += len(replies)
            self.problem("SET_REPORT(Output) answer dropped: the IN endpoint stayed busy")
            return
        try:
            for reply in replies:
                self._write_in(reply)
        finally:
            self._send_lock.release()

    def _send(self, reply: bytes) -> None:
        with self._send_lock:
            self._write_in(reply)

    def _received(self, data: memoryview) -> None:
        if not len(data):
            self.zlps += 1
            return
        self.responder.serve(bytes(data))

    def _connection_lost(self) -> None:
        self.device.note("connection lost")

    def _stale(self, data: memoryview) -> None:
        self.device.note(f"stale, dropped: {bytes(data[:TRACED]).hex()}")
        super()._stale(data)

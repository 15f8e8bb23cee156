"""CP2112 protocol: byte-exact reports as hid-cp2112 (Linux 6.12) builds and reads them.

Host-side reports are written out literally from the driver's structs and
builder functions (drivers/hid/hid-cp2112.c), so a layout mistake in cp2112.py
cannot hide behind a shared helper. ``Host`` replays the driver's transfer
loop (cp2112_i2c_xfer: request, up to 10 status polls, force sends of at most
61 bytes) against the device model.
"""

import errno
import struct
import threading
import time
from collections import deque
from pathlib import Path

import pipegadget
import pytest

from guest.adapters import cp2112
from guest.adapters.chipmodels import Eeprom
from guest.adapters.gadget import ControlSetup, ControlTransfer, GadgetError, install_wake_handler
from guest.fixtures import usb as usbfixtures

H = bytes.fromhex


def pad64(hexstr: str) -> bytes:
    data = H(hexstr)
    return data + bytes(64 - len(data))


def make_device(**kwargs) -> cp2112.Cp2112Device:
    kwargs.setdefault("i2c", {0x50: Eeprom("24c512", pattern="random", seed=7)})
    return cp2112.Cp2112Device(**kwargs)


class FakeEp0:
    """ep0 as ControlTransfer sees it: OUT data stages come from ``payloads``."""

    def __init__(self, payloads: list[bytes] | None = None):
        self.payloads = list(payloads or [])
        self.reads: list[int] = []
        self.writes: list[bytes] = []

    def read(self, n: int) -> bytes:
        self.reads.append(n)
        return self.payloads.pop(0)[:n] if n else b""

    def write(self, data: bytes) -> int:
        self.writes.append(bytes(data))
        return len(data)


def control(dev, rtype, request, value, length, payload: bytes | None = None):
    ep0 = FakeEp0([payload] if payload is not None else [])
    transfer = ControlTransfer(ControlSetup(rtype, request, value, 0, length), ep0.read, ep0.write)
    replies = dev.control(transfer)
    return transfer.outcome, ep0, replies


def get_report(dev, rid: int, length: int) -> bytes:
    """usbhid_get_raw_report: GET_REPORT, IN|class|interface, wValue (type+1) << 8 | id."""
    outcome, ep0, _ = control(dev, 0xA1, 0x01, 0x0300 | rid, length)
    assert outcome == "reply", f"GET_REPORT {rid:#04x} was {outcome}"
    return ep0.writes[0]


def set_report(dev, data: bytes) -> None:
    """usbhid_set_raw_report: SET_REPORT, OUT|class|interface, the data keeps the report ID."""
    outcome, ep0, _ = control(dev, 0x21, 0x09, 0x0300 | data[0], len(data), data)
    assert outcome == "receive" and ep0.reads == [len(data)]


def probe(dev) -> None:
    """usbhid_parse then cp2112_probe and chmod_sysfs_attrs, in the order the host sends them."""
    assert control(dev, 0x21, 0x0A, 0x0000, 0)[0] == "ack"  # hid_set_idle(dev, ifnum, 0, 0)
    outcome, ep0, _ = control(dev, 0x81, 0x06, 0x2200, len(cp2112.REPORT_DESCRIPTOR))
    assert outcome == "reply" and ep0.writes == [cp2112.REPORT_DESCRIPTOR]
    version = get_report(dev, 0x05, 3)
    assert len(version) == 3 and version[2] > 1  # hwversion > 1: write-read is used
    config = bytearray(get_report(dev, 0x06, 14))
    assert len(config) == 14
    config[12:14] = b"\x00\x01"  # config.retry_time = cpu_to_be16(1)
    set_report(dev, bytes(config))
    assert len(get_report(dev, 0x20, 2)) == 2


class Host:
    """cp2112_i2c_xfer, step for step, over a ``send(report) -> [IN reports]`` function."""

    def __init__(self, send):
        self.send = send
        self.force_sends: list[int] = []

    def _status(self) -> int:
        replies = self.send(H("1501"))
        assert len(replies) == 1 and len(replies[0]) == 64
        return cp2112.host_xfer_status(replies[0])

    def transfer(self, request: bytes, read_length: int = 0) -> int | bytes:
        assert self.send(request) == []
        for _ in range(10):  # XFER_STATUS_RETRIES
            ret = self._status()
            if ret == -errno.EBUSY:
                continue
            if ret < 0:
                return ret
            break
        else:
            assert self.send(H("1701")) == []  # CP2112_CANCEL_TRANSFER, 0x01
            return -errno.ETIMEDOUT
        if not read_length:
            return ret  # a write: the status length (this emulator reports 0)
        data = b""
        while len(data) < read_length:
            ask = min(read_length - len(data), 61)  # cp2112_read caps at sizeof(read_data)
            self.force_sends.append(ask)
            (reply,) = self.send(struct.pack(">BH", 0x12, ask))
            assert len(reply) == 64 and reply[0] == 0x13
            got = reply[3 : 3 + reply[2]]
            if not got:
                return -errno.EIO  # "read returned 0"
            data += got
        return data

    def read(self, addr: int, length: int) -> int | bytes:
        # cp2112_read_req: report, slave_address << 1, be16 length
        return self.transfer(struct.pack(">BBH", 0x10, addr << 1, length), length)

    def write(self, addr: int, data: bytes) -> int | bytes:
        # cp2112_i2c_write_req: report, slave_address << 1, u8 length, data
        return self.transfer(bytes((0x14, addr << 1, len(data))) + data)

    def write_read(self, addr: int, target: bytes, length: int) -> int | bytes:
        # cp2112_i2c_write_read_req: ..., be16 read length, target_address_length, address
        request = struct.pack(">BBHB", 0x11, addr << 1, length, len(target)) + target
        return self.transfer(request, length)

    def at24_read(self, offset: int, length: int) -> bytes:
        """at24_read: regmap_i2c_read of at most io_limit (128) bytes per write-read."""
        out = b""
        while len(out) < length:
            count = min(128, length - len(out))
            chunk = self.write_read(0x50, (offset + len(out)).to_bytes(2, "big"), count)
            assert isinstance(chunk, bytes), chunk
            out += chunk
        return out


def probed(**kwargs) -> tuple[cp2112.Cp2112Device, Host]:
    dev = make_device(**kwargs)
    probe(dev)
    return dev, Host(dev.interrupt_out)


# --- reports the host builds -------------------------------------------------------------


def test_read_request_layout():
    # cp2112_read_req: {u8 report; u8 slave_address (<< 1); __be16 length}, sizeof = 4
    assert cp2112.encode_read_request(0x50, 200) == H("10 a0 00c8")
    assert cp2112.decode_read_request(H("10 a0 0200")) == (0x50, 512)


def test_write_read_request_layout_as_at24_sends_it():
    # regmap_i2c_read -> cp2112_i2c_xfer(num=2) -> cp2112_i2c_write_read_req: addr_length + 5
    report = cp2112.encode_write_read_request(0x50, H("1234"), 128)
    assert report == H("11 a0 0080 02 1234")
    assert cp2112.decode_write_read_request(report) == (0x50, 128, H("1234"))
    with pytest.raises(ValueError, match="announced"):
        cp2112.decode_write_read_request(H("11 a0 0080 02 12"))


def test_write_request_layout():
    # cp2112_i2c_write_req: {report, slave_address << 1, u8 length, data[61]}, data_length + 3
    report = cp2112.encode_write_request(0x50, H("1234 ab"))
    assert report == H("14 a0 03 1234ab")
    assert cp2112.decode_write_request(report) == (0x50, H("1234ab"))


def test_force_send_status_and_cancel_layout():
    assert cp2112.encode_force_send(61) == H("12 003d")  # cp2112_force_read_report, be16
    assert cp2112.decode_force_send(H("12 0011")) == 17
    assert cp2112.encode_status_request() == H("1501")  # cp2112_xfer_status: buf[1] = 0x01
    assert cp2112.encode_cancel() == H("1701")  # cp2112_i2c_xfer after 10 busy answers


def test_status_response_layout_and_driver_meaning():
    # cp2112_xfer_status_report: report, status0, status1, __be16 retries, __be16 length
    report = cp2112.encode_status_response(2, 5, 0, 0x80)
    assert report == pad64("16 02 05 0000 0080")
    assert cp2112.decode_status_response(report) == (2, 5, 0, 0x80)
    # cp2112_raw_event: the switch on status0, then status1 for errors
    meaning = cp2112.host_xfer_status
    assert meaning(cp2112.encode_status_response(0, 0, 0, 0)) == -errno.EAGAIN
    assert meaning(cp2112.encode_status_response(1, 2, 0, 0)) == -errno.EBUSY
    assert meaning(report) == 0x80
    assert meaning(cp2112.encode_status_response(3, 0, 1, 0)) == -errno.ETIMEDOUT  # NACK
    assert meaning(cp2112.encode_status_response(3, 1, 0, 0)) == -errno.ETIMEDOUT  # bus
    assert meaning(cp2112.encode_status_response(3, 2, 0, 0)) == -errno.EIO  # arbitration
    assert meaning(cp2112.encode_status_response(7, 0, 0, 0)) == -errno.EINVAL


def test_read_response_layout():
    # cp2112_raw_event DATA_READ_RESPONSE: data[2] = length (capped at 61), data from data[3]
    report = cp2112.encode_read_response(2, b"\xaa\xbb")
    assert report == pad64("13 02 02 aabb")
    assert cp2112.decode_read_response(report) == (2, b"\xaa\xbb")
    assert cp2112.decode_read_response(pad64("13 02 50")) == (2, bytes(61))
    with pytest.raises(ValueError, match="at most 61"):
        cp2112.encode_read_response(2, bytes(62))


def test_feature_report_layouts():
    assert cp2112.encode_version() == H("05 0c 02")  # buf[1] part number, buf[2] version
    # cp2112_smbus_config_report: be32 clock, addr, auto_send, be16 w/r timeouts, scl, be16 retry
    assert cp2112.SmbusConfig().encode() == H("06 000186a0 02 00 0000 0000 00 0000")
    config = cp2112.SmbusConfig.decode(H("06 00061a80 02 01 0064 0032 01 0001"))
    assert config == cp2112.SmbusConfig(400_000, 2, 1, 100, 50, 1, 1)
    # cp2112_usb_config_report: le16 vid, le16 pid, max_power, power_mode, major, minor, mask
    assert cp2112.UsbConfig().encode() == H("21 c410 90ea 32 00 01 00 00")
    assert cp2112.UsbConfig.decode(H("21 c410 3412 32 00 01 00 02")) == (
        cp2112.UsbConfig(pid=0x1234),
        0x02,
    )
    assert cp2112.encode_gpio_config(0x01, 0xFF, 0x00, 0x00) == H("02 01 ff 00 00")
    assert cp2112.encode_gpio_set(0xFF, 0x04) == H("04 ff 04")  # cp2112_gpio_set
    # pstr_store: length = 2 * chars + 2, type USB_DT_STRING, UTF-16LE
    assert cp2112.encode_string_report(0x23, "AB") == H("23 06 03 4100 4200")
    assert cp2112.decode_string_report(H("23 06 03 4100 4200") + bytes(56)) == "AB"
    assert len(cp2112.encode_string_report(0x22, "x" * 40)) == 63  # 30 characters at most


# --- report descriptor -------------------------------------------------------------------


def parse_report_descriptor(desc: bytes) -> tuple[dict, list]:
    """Short items as hid-core's hid_parser_{main,global,local} read them, re-done here."""
    reports: dict[tuple[str, int], int] = {}
    ranges = []
    state = {"id": 0, "size": 0, "count": 0, "min": 0, "max": 0}
    depth = 0
    offset = 0
    while offset < len(desc):
        prefix = desc[offset]
        size = (0, 1, 2, 4)[prefix & 3]
        data = int.from_bytes(desc[offset + 1 : offset + 1 + size], "little")
        offset += 1 + size
        kind, tag = (prefix >> 2) & 3, prefix >> 4
        if kind == 1:  # global
            key = {1: "min", 2: "max", 7: "size", 8: "id", 9: "count"}.get(tag)
            if key:
                state[key] = data
        elif kind == 0:  # main
            if tag == 10:
                depth += 1
            elif tag == 12:
                depth -= 1
            else:
                name = {8: "input", 9: "output", 11: "feature"}[tag]
                key = (name, state["id"])
                reports[key] = reports.get(key, 0) + state["size"] * state["count"]
                ranges.append((state["min"], state["max"]))
    assert offset == len(desc) and depth == 0
    return reports, ranges


# every report hid-cp2112 uses: (direction, id) -> bytes with the ID, as the driver sizes them
DRIVER_REPORTS = {
    ("feature", 0x02): 5,  # CP2112_GPIO_CONFIG_LENGTH
    ("feature", 0x03): 2,  # CP2112_GPIO_GET_LENGTH
    ("feature", 0x04): 3,  # CP2112_GPIO_SET_LENGTH
    ("feature", 0x05): 3,  # u8 buf[3] in cp2112_probe
    ("feature", 0x06): 14,  # sizeof(struct cp2112_smbus_config_report)
    ("feature", 0x20): 2,  # u8 buf[2] in chmod_sysfs_attrs
    ("feature", 0x21): 10,  # sizeof(struct cp2112_usb_config_report)
    ("feature", 0x22): 63,  # sizeof(cp2112_string_report.contents)
    ("feature", 0x23): 63,
    ("feature", 0x24): 63,
    ("output", 0x10): 64,  # interrupt reports: CP2112_REPORT_MAX_LENGTH,
    ("output", 0x11): 64,  # = sizeof(struct cp2112_write_req_report)
    ("output", 0x12): 64,
    ("output", 0x14): 64,
    ("output", 0x15): 64,
    ("output", 0x17): 64,
    ("input", 0x13): 64,
    ("input", 0x16): 64,
}


def test_report_descriptor_declares_every_report_the_driver_uses():
    reports, ranges = parse_report_descriptor(cp2112.REPORT_DESCRIPTOR)
    assert reports == {key: (size - 1) * 8 for key, size in DRIVER_REPORTS.items()}
    assert set(ranges) == {(0, 255)}
    assert len(cp2112.REPORT_DESCRIPTOR) <= 4096  # HID_MAX_DESCRIPTOR_SIZE
    # the longest requests the driver builds fit their output report
    assert len(cp2112.encode_write_request(0x50, bytes(61))) == 64
    assert len(cp2112.encode_write_read_request(0x50, bytes(16), 512)) <= 64


def test_gadget_descriptors_carry_the_report_descriptor_length():
    blob = cp2112.cp2112_descriptors()
    magic, length, flags, fs_count, hs_count = struct.unpack_from("<5I", blob)
    assert (magic, length, flags, fs_count, hs_count) == (3, len(blob), 3, 4, 4)
    rlen = len(cp2112.REPORT_DESCRIPTOR).to_bytes(2, "little").hex()
    fs = blob[20:52]
    hs = blob[52:84]
    # usbhid_parse: the HID descriptor sits among the interface's extra descriptors
    assert fs[:9] == H("09 04 00 00 02 03 00 00 01")
    assert fs[9:18] == H("09 21 1101 00 01 22" + rlen)
    # usbhid_start: the first interrupt IN and OUT endpoints become urbin and urbout
    assert fs[18:25] == H("07 05 81 03 4000 01")
    assert fs[25:32] == H("07 05 02 03 4000 01")
    assert hs[:18] == fs[:18]
    assert hs[18:25] == H("07 05 81 03 4000 04") and hs[25:32] == H("07 05 02 03 4000 04")
    config = cp2112.cp2112_gadget_config("cp2112a", "harness-cp2112a", make_device())
    assert (config.vendor_id, config.product_id, config.endpoints) == (0x10C4, 0xEA90, 2)


# --- ep0: what usbhid and cp2112_probe ask --------------------------------------------------


def test_probe_sequence_answers_every_request():
    dev = make_device()
    probe(dev)
    assert dev.smbus.retry_time == 1
    assert get_report(dev, 0x06, 14) == H("06 000186a0 02 00 0000 0000 00 0001")
    assert get_report(dev, 0x05, 3) == H("05 0c 02")
    assert get_report(dev, 0x20, 2) == H("20 ff")  # nothing programmed: sysfs attrs 0644
    assert dev.stats.features == 4 + 3 and dev.stats.errors == 0 and not dev.problems
    assert dev.by_report["SMBUS_CONFIG"] == 3


def test_hid_descriptor_and_short_descriptor_reads():
    dev = make_device()
    outcome, ep0, _ = control(dev, 0x81, 0x06, 0x2100, 9)
    assert outcome == "reply" and ep0.writes[0][:2] == H("0921")
    outcome, ep0, _ = control(dev, 0x81, 0x06, 0x2200, 8)  # wLength cuts the reply
    assert ep0.writes == [cp2112.REPORT_DESCRIPTOR[:8]]


def test_unknown_requests_are_stalled_and_recorded():
    dev = make_device()
    outcome, ep0, _ = control(dev, 0xA1, 0x01, 0x0307, 8)  # feature 0x07 does not exist
    assert outcome == "stall" and ep0.reads == [0]
    outcome, _, _ = control(dev, 0xA1, 0x01, 0x0304, 3)  # GPIO_SET cannot be read
    assert outcome == "stall"
    outcome, _, _ = control(dev, 0xA1, 0x01, 0x0116, 64)  # input reports come on the interrupt
    assert outcome == "stall"
    assert dev.stats.errors == 3 and dev.problem_count == 3


def test_gpio_direction_output_and_get():
    dev = make_device()
    # cp2112_gpio_direction_output: GET config, buf[1] |= BIT(3), buf[2] = gpio_push_pull, SET
    config = bytearray(get_report(dev, 0x02, 5))
    assert config == H("02 00 00 00 00")
    config[1] |= 1 << 3
    config[2] = 0xFF
    set_report(dev, bytes(config))
    set_report(dev, H("04 00 08"))  # cp2112_gpio_set(offset 3, value 0)
    dev.gpio_input = 0x81
    value = get_report(dev, 0x03, 2)  # cp2112_gpio_get_all
    assert value == H("03 81")  # pin 3 drives 0, the inputs show what is on them
    set_report(dev, H("04 ff 08"))
    assert get_report(dev, 0x03, 2) == H("03 89")
    assert get_report(dev, 0x02, 5) == H("02 08 ff 00 00")


def test_prom_fields_are_one_time_programmable():
    dev = make_device()
    # product_id_store: GET usb config, set pid and mask 0x02, SET; chmod_sysfs_attrs reads lock
    config = bytearray(get_report(dev, 0x21, 10))
    config[3:5] = (0x1234).to_bytes(2, "little")
    config[9] = 0x02
    set_report(dev, bytes(config))
    assert get_report(dev, 0x21, 10) == H("21 c410 3412 32 00 01 00 00")
    assert get_report(dev, 0x20, 2) == H("20 fd")
    config[3:5] = (0x5678).to_bytes(2, "little")
    set_report(dev, bytes(config))
    assert dev.usb_config.pid == 0x1234  # programmed fields ignore writes
    # pstr_store sends report.length + 1 bytes; pstr_show reads sizeof(contents) = 63
    set_report(dev, cp2112.encode_string_report(0x23, "bench"))
    reply = get_report(dev, 0x23, 63)
    assert len(reply) == 63 and cp2112.decode_string_report(reply) == "bench"
    assert get_report(dev, 0x20, 2) == H("20 bd")
    assert dev.stats.errors == 0


def test_set_report_output_on_ep0_is_served_like_the_interrupt_pipe():
    dev, _ = probed()
    outcome, _, replies = control(dev, 0x21, 0x09, 0x0215, 2, H("1501"))
    assert outcome == "receive"
    assert replies == [pad64("16 00 00 0000 0000")]  # nothing started: IDLE


# --- transfers through the device state machine ------------------------------------------


def test_full_read_transaction_of_the_eeprom():
    dev, host = probed()
    eeprom = dev.i2c[0x50]
    assert host.write(0x50, H("0100")) == 0  # set the address pointer to 0x0100
    data = host.read(0x50, 200)
    assert data == eeprom.expected(0x100, 200)
    assert host.force_sends == [61, 61, 61, 17]
    stats = dev.stats
    assert (stats.transfers, stats.bytes_read, stats.bytes_written) == (2, 200, 2)
    assert (stats.status_polls, stats.force_sends, stats.nacks) == (2, 4, 0)
    assert dev.by_report["DATA_READ_REQUEST"] == 1 and dev.by_report["DATA_WRITE_REQUEST"] == 1
    assert dev.pending == 0 and not dev.problems


def test_status_reports_the_read_length_then_complete():
    dev, _ = probed()
    assert dev.interrupt_out(H("10 a0 0080")) == []
    (status,) = dev.interrupt_out(H("1501"))
    assert status == pad64("16 02 05 0000 0080")
    (chunk,) = dev.interrupt_out(H("12 003d"))
    assert chunk[:3] == H("13 02 3d") and chunk[3:64] == dev.i2c[0x50].expected(0, 61)


def test_at24_write_read_with_two_byte_address():
    dev, host = probed()
    eeprom = dev.i2c[0x50]
    assert host.write_read(0x50, H("0000"), 1) == eeprom.expected(0, 1)  # at24_probe test read
    assert host.write_read(0x50, H("ff80"), 128) == eeprom.expected(0xFF80, 128)
    assert dev.stats.bytes_written == 4  # two 2-byte target addresses
    assert host.at24_read(0x1234, 1000) == eeprom.expected(0x1234, 1000)


def test_at24_write_then_read_back():
    dev, host = probed()
    # at24_regmap_write with page size 1: one write message [addr_hi, addr_lo, byte]
    for offset, value in ((0x2000, 0xA5), (0x2001, 0x5A)):
        assert host.write(0x50, offset.to_bytes(2, "big") + bytes((value,))) == 0
    assert host.at24_read(0x2000, 2) == H("a55a")


def test_long_nvmem_read_in_io_limit_chunks():
    dev, host = probed()
    assert host.at24_read(0, 4096) == dev.i2c[0x50].expected(0, 4096)
    assert dev.stats.transfers == 32 and dev.stats.bytes_read == 4096
    assert dev.stats.force_sends == 32 * 3  # 61 + 61 + 6 per 128-byte write-read


def test_absent_address_nacks_as_the_driver_expects():
    dev, host = probed()  # retry_time 1 after probe
    assert host.read(0x51, 1) == -errno.ETIMEDOUT
    (status,) = dev.interrupt_out(H("1501"))
    assert status == pad64("16 03 00 0000 0000")  # ERROR, TIMEOUT_NACK
    assert host.write(0x22, H("00")) == -errno.ETIMEDOUT
    assert host.write_read(0x51, H("0000"), 4) == -errno.ETIMEDOUT
    assert dev.stats.nacks == 3 and dev.stats.transfers == 0 and not dev.problems


def test_nack_with_unlimited_retries_stays_busy_until_cancelled():
    dev = make_device()  # power-on retry_time 0 = no limit, as before cp2112_probe
    host = Host(dev.interrupt_out)
    assert host.read(0x51, 1) == -errno.ETIMEDOUT  # 10 x BUSY, then the driver cancels
    assert dev.stats.busy_replies == 10 and dev.stats.cancels == 1
    assert dev.stats.nacks == 11  # the request, then one retry per status poll
    assert dev.state == cp2112.STATUS0_IDLE


def test_eeprom_write_cycle_nack_and_retry_time():
    dev, host = probed(i2c={0x50: Eeprom("24c32", pattern="zero", busy_nacks=1)})
    assert host.write(0x50, H("0010 77")) == 0
    assert host.write_read(0x50, H("0010"), 1) == -errno.ETIMEDOUT  # write cycle: NACK
    assert host.write_read(0x50, H("0010"), 1) == H("77")  # at24 retries until it answers
    dev.smbus.retry_time = 2
    assert host.write(0x50, H("0011 66")) == 0
    assert host.write_read(0x50, H("0010"), 2) == H("7766")  # retried inside the chip
    assert dev.retries == 1


def test_busy_polls_then_complete_and_timeout_with_cancel():
    dev, host = probed(busy_polls=3)
    assert host.read(0x50, 10) == dev.i2c[0x50].expected(0, 10)
    assert dev.stats.busy_replies == 3 and dev.stats.status_polls == 4
    dev.busy_polls = 10
    assert host.read(0x50, 100) == -errno.ETIMEDOUT
    assert dev.stats.cancels == 1 and dev.stats.discarded_bytes == 100
    assert dev.state == cp2112.STATUS0_IDLE


def test_new_request_discards_unfetched_data():
    dev, host = probed()
    dev.interrupt_out(H("10 a0 0040"))
    dev.interrupt_out(H("1501"))
    dev.interrupt_out(H("12 0010"))
    assert host.read(0x50, 4) is not None
    assert dev.stats.discarded_bytes == 48


def test_auto_send_read_pushes_data_without_force_sends():
    dev, _ = probed()
    config = bytearray(get_report(dev, 0x06, 14))
    config[6] = 1  # auto_send_read
    set_report(dev, bytes(config))
    replies = dev.interrupt_out(H("10 a0 0064"))
    assert [r[2] for r in replies] == [61, 39]
    assert b"".join(r[3 : 3 + r[2]] for r in replies) == dev.i2c[0x50].expected(0, 100)
    assert dev.interrupt_out(H("1501")) == [pad64("16 02 05 0000 0064")]


def test_force_send_without_data_is_answered_and_recorded():
    dev, _ = probed()
    assert dev.interrupt_out(H("12 003d")) == [pad64("13 00 00")]
    assert dev.stats.errors == 1 and "no read data" in dev.problems[-1]


def test_a_protocol_problem_quotes_the_traffic_before_it():
    dev, _ = probed()
    dev.interrupt_out(H("10 a0 0007"))  # read 7
    dev.interrupt_out(H("15 01"))  # status: COMPLETE, 7
    dev.interrupt_out(H("12 0007"))  # the 7 bytes
    dev.interrupt_out(H("12 0007"))  # again: nothing is ready
    problem = dev.problems[-1]
    assert "DATA_READ_FORCE_SEND(7) with no read data ready (state 2)" in problem
    events = [h.split(" ", 1)[1] for h in problem.split("after: ")[1].split(" | ")]
    assert events[0] == "reset"  # probed() plugged it
    assert [e[:6] for e in events[-6:]] == [
        "> 10a0",
        "> 1501",
        "< 1602",
        "> 1200",
        "< 1302",
        "> 1200",
    ]
    assert events[-4] == "< 1602050000000700"  # COMPLETE, the 7 bytes the host then fetched


def test_malformed_and_misdirected_reports_are_recorded():
    dev, _ = probed()
    cases = [
        H("10 a0 0000"),  # read length 0
        H("10 a0 0201"),  # 513 > 512
        H("11 a0 0004 03 0000"),  # 3 target bytes announced, 2 present
        H("11 a0 0004 00"),  # no target address
        H("14 a0 00"),  # zero-length write
        H("10 a0"),  # cut short
        H("16 02 05 0000 0000"),  # an input report sent the wrong way
        H("06 000186a0"),  # a feature report on the interrupt pipe
    ]
    for report in cases:
        assert dev.interrupt_out(report) == []
    assert dev.stats.errors == len(cases) and dev.state == cp2112.STATUS0_IDLE
    assert dev.stats.transfers == 0


def test_reset_is_a_power_cycle():
    dev, host = probed()
    host.write(0x50, H("0200"))
    set_report(dev, cp2112.encode_string_report(0x22, "Harness"))
    dev.interrupt_out(H("10 a0 0040"))
    dev.reset()
    assert dev.smbus == cp2112.SmbusConfig() and dev.state == cp2112.STATUS0_IDLE
    assert dev.pending == 0 and dev.i2c[0x50].pointer == 0
    assert dev.strings[0x22] == "Harness" and dev.lock_byte == 0xDF  # the PROM keeps


def test_eeprom_anomalies_become_device_problems():
    dev, host = probed()
    assert host.write(0x50, H("00")) == 0  # one address byte: the chip ignores it
    assert dev.problem_count == 1 and "single address byte" in dev.problems[0]


# --- triggers --------------------------------------------------------------------------------


def test_trigger_withholds_the_response_that_crosses_the_threshold():
    dev, _ = probed()
    sent: list[bytes] = []
    actions: list[int] = []
    responder = cp2112.Responder(dev, sent.append, lambda: actions.append(len(sent)))
    trigger = responder.arm(cp2112.Trigger("bytes_read", 100))
    responder.serve(H("10 a0 00c8"))
    responder.serve(H("1501"))
    responder.serve(H("12 003d"))
    assert actions == [] and len(sent) == 2
    responder.serve(H("12 003d"))  # 122 bytes: this response is withheld, the unplug runs
    assert actions == [2] and len(sent) == 2 and responder.withheld == 1
    assert trigger.fired.is_set() and trigger.fired_at["bytes_read"] == 122
    responder.serve(H("12 003d"))
    assert actions == [2] and len(sent) == 3  # fired once only


def test_trigger_on_a_report_count_after_its_reply():
    dev, _ = probed()
    sent: list[bytes] = []
    actions: list[int] = []
    responder = cp2112.Responder(dev, sent.append, lambda: None)
    responder.arm(
        cp2112.Trigger(
            "TRANSFER_STATUS_REQUEST",
            2,
            withhold_reply=False,
            action=lambda: actions.append(len(sent)),
        )
    )
    for report in (H("10 a0 0001"), H("1501"), H("12 0001"), H("10 a0 0001"), H("1501")):
        responder.serve(report)
    assert actions == [3] and len(sent) == 3


def test_trigger_failure_is_recorded_and_names_are_checked():
    dev, _ = probed()
    responder = cp2112.Responder(dev, lambda reply: None, lambda: None)

    def broken():
        raise OSError(19, "No such device")

    trigger = responder.arm(cp2112.Trigger("reports", 1, action=broken))
    responder.serve(H("1501"))
    assert trigger.fired.is_set() and "No such device" in trigger.error
    assert dev.problem_count == 1
    with pytest.raises(ValueError, match="allowed"):
        responder.arm(cp2112.Trigger("bytes", 1))


# --- emulator thread over pipes ------------------------------------------------------------


def PipeGadget() -> pipegadget.PipeGadget:  # noqa: N802 - reads like the class it makes
    return pipegadget.PipeGadget(out_index=1, buffer_size=64)


def running_emulator(plug: bool = True) -> tuple[pipegadget.PipeGadget, cp2112.Emulator]:
    """An emulator serving its pipe endpoints from its own thread, started (and plugged)."""
    assert install_wake_handler()
    gadget = PipeGadget()
    emu = cp2112.Emulator(make_device(), gadget=gadget)
    emu.start()
    if plug:
        emu.plug()
    return gadget, emu


def test_emulator_serves_until_unplugged_mid_read_and_stops_cleanly():
    assert install_wake_handler()
    gadget = PipeGadget()
    dev = make_device()
    emu = cp2112.Emulator(dev, gadget=gadget)
    emu.start()
    emu.plug()
    assert gadget.calls == ["create 64", "plug"]
    probe(dev)

    def request(report: bytes, replies: int) -> list[bytes]:
        before = dev.stats.reports
        gadget.send(report)
        if not replies:  # wait until it was read, so the next report is a read of its own
            assert emu.wait_counter("reports", before + 1, timeout=5)
        return [gadget.receive(64) for _ in range(replies)]

    host = Host(lambda report: request(report, 0 if report[0] in (0x10, 0x11, 0x14) else 1))
    assert host.at24_read(0, 128) == dev.i2c[0x50].expected(0, 128)
    trigger = emu.arm_unplug("bytes_read", 100, relative=True)
    request(H("11 a0 0080 02 0080"), 0)
    assert request(H("1501"), 1) == [pad64("16 02 05 0000 0080")]
    assert request(H("12 003d"), 1)[0][:3] == H("13 02 3d")
    gadget.send(H("12 003d"))  # its response is withheld: the host waits, then we unplug
    assert trigger.fired.wait(5)
    assert gadget.calls[-1] == "unplug" and not gadget.plugged
    stats = emu.stats()
    assert stats["withheld_replies"] == 1 and stats["device"]["bytes_read"] == 128 + 122
    assert stats["device"]["by_report"]["DATA_WRITE_READ_REQUEST"] == 2
    time.sleep(0.05)  # the thread is back in read(), blocked: only a signal gets it out
    thread = emu._thread
    assert emu.stop() == []
    assert not thread.is_alive()
    assert gadget.calls[-1] == "destroy"


def test_emulator_sends_set_report_output_answers_on_the_in_endpoint():
    gadget, emu = running_emulator(plug=False)
    ep0 = FakeEp0([H("1501")])
    emu._control(ControlTransfer(ControlSetup(0x21, 0x09, 0x0215, 0, 2), ep0.read, ep0.write))
    assert gadget.receive(64) == pad64("16 00 00 0000 0000")
    assert emu.stop() == []


def test_emulator_plug_needs_a_reading_thread():
    emu = cp2112.Emulator(make_device(), gadget=PipeGadget())
    with pytest.raises(GadgetError, match="not reading"):
        emu.plug()
    emu.gadget.destroy()


def test_emulator_wait_counter():
    gadget, emu = running_emulator(plug=False)
    worker = threading.Thread(target=lambda: (gadget.send(H("1501")), gadget.receive(64)))
    worker.start()
    assert emu.wait_counter("TRANSFER_STATUS_REQUEST", 1, timeout=5)
    assert not emu.wait_counter("TRANSFER_STATUS_REQUEST", 2, timeout=0.05)
    worker.join()
    assert emu.stop() == []


# --- host-side sysfs lookups -----------------------------------------------------------------


def fake_sysfs(root: Path) -> Path:
    """/sys/bus/usb/devices with a plugged CP2112 whose HID device is bound to cp2112."""
    usb = root / "usb"
    device = usb / "1-1"
    device.mkdir(parents=True)
    for name, value in (("serial", "harness-cp2112a"), ("idVendor", "10c4"), ("idProduct", "ea90")):
        (device / name).write_text(value + "\n")
    hid = usb / "1-1:1.0" / "0003:10C4:EA90.0001"
    (hid / "i2c-7").mkdir(parents=True)
    (hid / "i2c-7" / "name").write_text("CP2112 SMBus Bridge on hidraw0\n")
    (hid / "gpiochip5").mkdir()
    (root / "drivers" / "cp2112").mkdir(parents=True)
    (hid / "driver").symlink_to(root / "drivers" / "cp2112")
    return usb


def test_host_side_lookups(tmp_path):
    usb = fake_sysfs(tmp_path)
    interface = cp2112.find_usb_interface("harness-cp2112a", root=usb)
    assert interface == usb / "1-1:1.0"
    assert cp2112.find_usb_interface("other", root=usb) is None
    hid = cp2112.find_hid_device(interface)
    assert hid.name == "0003:10C4:EA90.0001" and cp2112.bound_driver(hid) == "cp2112"
    assert cp2112.find_i2c_adapter(interface) == "i2c-7"
    assert cp2112.find_gpiochip(interface) == "gpiochip5"
    i2c = tmp_path / "i2c"
    (i2c / "i2c-7").mkdir(parents=True)
    (i2c / "i2c-7" / "name").write_text("CP2112 SMBus Bridge on hidraw0\n")
    (i2c / "i2c-2").mkdir()
    (i2c / "i2c-2" / "name").write_text("dln2-i2c\n")
    assert cp2112.find_i2c_adapters(root=i2c) == ["i2c-7"]
    (i2c / "i2c-7" / "new_device").write_text("")
    assert usbfixtures.new_i2c_device("i2c-7", "24c512", 0x50, root=i2c) == "7-0050"
    assert (i2c / "i2c-7" / "new_device").read_text() == "24c512 0x50"


def test_requests_the_host_sends_while_the_unplug_is_under_way_are_answered():
    """Until the UDC is unbound the host is connected and may still send: a transfer it
    starts then must not be dropped as stale, or its status and force send meet a model
    that never saw it ("DATA_READ_FORCE_SEND with no read data ready", seen in
    rtc-usb-unplug-during-read under TCG, where unbinding takes tens of ms)."""
    gadget, emu = running_emulator()
    probe(emu.device)
    unbind = gadget.unplug
    endpoint = gadget.endpoints[emu.EP_OUT]
    read, reads = endpoint.read, []

    def counted_read(size: int) -> int:
        reads.append(size)
        return read(size)

    endpoint.read = counted_read
    assert pipegadget.interrupt_until(emu._thread, lambda: bool(reads))  # a read of the patch

    def slow_unbind() -> bool:
        taken = emu.device.stats.reports + emu.stale_reads
        gadget.send(H("11 a0 0007 02 0000"))  # one report per read: wait until taken
        assert emu.wait_until(lambda: emu.device.stats.reports + emu.stale_reads, taken + 1, 5)
        gadget.send(H("1501"))
        assert gadget.receive(64)[:3] == H("16 02 05")  # COMPLETE
        gadget.send(H("12 0007"))
        assert gadget.receive(64)[:3] == H("13 02 07")  # the 7 bytes
        begun = len(reads)  # as the unbind's ESHUTDOWN does: a new read, still unbinding
        assert pipegadget.interrupt_until(emu._thread, lambda: len(reads) > begun)
        gadget.unplug = unbind
        return unbind()

    gadget.unplug = slow_unbind
    emu.unplug()
    emu.plug()
    gadget.send(H("1501"))  # the next connection's first request is answered, not dropped
    assert gadget.receive(64) == pad64("16 00 00 0000 0000")
    assert emu.stats()["stale_reads"] == 0
    assert emu.device.problems == deque() and emu.stop() == []

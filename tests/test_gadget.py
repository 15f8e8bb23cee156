"""FunctionFS and configfs plumbing that can be checked without a kernel: blobs, events, ep0."""

import errno
import os
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from guest.adapters import gadget
from guest.adapters.gadget import ControlSetup, ControlTransfer


def parse_descriptors(blob: bytes) -> dict:
    """What __ffs_data_got_descs (f_fs.c) checks, re-done independently."""
    magic, length, flags = struct.unpack_from("<III", blob)
    assert magic == gadget.FUNCTIONFS_DESCRIPTORS_MAGIC_V2 and length == len(blob)
    offset = 12
    counts = []
    for bit in (gadget.FUNCTIONFS_HAS_FS_DESC, gadget.FUNCTIONFS_HAS_HS_DESC):
        if flags & bit:
            counts.append(struct.unpack_from("<I", blob, offset)[0])
            offset += 4
    speeds = []
    for count in counts:
        descs = []
        for _ in range(count):
            size = blob[offset]
            descs.append(blob[offset : offset + size])
            offset += size
        speeds.append(descs)
    assert offset == len(blob)  # "Some garbage left?" -> -EINVAL
    return {"flags": flags, "counts": counts, "speeds": speeds}


def test_interface_and_endpoint_descriptors():
    assert gadget.interface_descriptor(0, 2, 0xFF, string=1) == bytes.fromhex(
        "09 04 00 00 02 ff 00 00 01"
    )
    assert gadget.endpoint_descriptor(0x82, gadget.XFER_BULK, 512) == bytes.fromhex(
        "07 05 82 02 0002 00"
    )
    assert gadget.endpoint_descriptor(0x01, gadget.XFER_INT, 64, 1) == bytes.fromhex(
        "07 05 01 03 4000 01"
    )


def test_hid_descriptor_is_nine_bytes():
    # f_fs.c ffs_do_single_desc: class descriptor of a HID interface must be sizeof(hid_descriptor)
    desc = gadget.hid_descriptor(75)
    assert desc == bytes.fromhex("09 21 1101 00 01 22 4b00")


def test_descriptor_blob_full_and_high_speed():
    def one_speed(max_packet):
        return [
            gadget.interface_descriptor(0, 2, 0xFF, string=1),
            gadget.endpoint_descriptor(0x01, gadget.XFER_BULK, max_packet),
            gadget.endpoint_descriptor(0x82, gadget.XFER_BULK, max_packet),
        ]

    blob = gadget.descriptors_blob(one_speed(64), one_speed(512))
    parsed = parse_descriptors(blob)
    assert parsed["flags"] == 3 and parsed["counts"] == [3, 3]
    assert len(blob) == 12 + 8 + 2 * (9 + 7 + 7)
    # __ffs_data_do_entity: endpoint addresses must be the same, in order, for every speed
    addresses = [
        [d[2] for d in descs if d[1] == gadget.USB_DT_ENDPOINT] for descs in parsed["speeds"]
    ]
    assert addresses == [[0x01, 0x82], [0x01, 0x82]]


def test_descriptor_blob_single_speed_and_empty():
    blob = gadget.descriptors_blob([gadget.interface_descriptor(0, 0, 0xFF)], [])
    assert parse_descriptors(blob)["flags"] == gadget.FUNCTIONFS_HAS_FS_DESC
    assert len(blob) == 12 + 4 + 9
    with pytest.raises(ValueError):
        gadget.descriptors_blob([], [])


def test_strings_blob():
    blob = gadget.strings_blob(["DLN-2"])
    assert blob == struct.pack("<IIII", 2, 24, 1, 1) + b"\x09\x04DLN-2\x00"
    two = gadget.strings_blob(["a", "bc"])
    assert struct.unpack_from("<IIII", two) == (2, len(two), 2, 1)
    assert two[16:] == b"\x09\x04a\x00bc\x00"
    assert gadget.strings_blob([]) == struct.pack("<IIII", 2, 16, 0, 0)


def event(kind: int, setup: tuple = (0, 0, 0, 0, 0)) -> bytes:
    return struct.pack("<BBHHHB3x", *setup, kind)


def test_parse_events():
    data = event(0) + event(2) + event(4, (0xA1, 0x01, 0x0300, 0, 64)) + event(3)
    events = gadget.parse_events(data)
    assert [name for name, _ in events] == ["BIND", "ENABLE", "SETUP", "DISABLE"]
    setup = events[2][1]
    assert setup == ControlSetup(0xA1, 0x01, 0x0300, 0, 64) and setup.is_in
    assert gadget.EVENT_SIZE == 12


class FakeEp0:
    def __init__(self, fail: int | None = None):
        self.reads: list[int] = []
        self.writes: list[bytes] = []
        self.fail = fail

    def read(self, n: int) -> bytes:
        self.reads.append(n)
        if self.fail:
            raise OSError(self.fail, os.strerror(self.fail))
        return b"\x5a" * n

    def write(self, data: bytes) -> int:
        self.writes.append(data)
        if self.fail:
            raise OSError(self.fail, os.strerror(self.fail))
        return len(data)


def transfer(setup: ControlSetup, ep0: FakeEp0) -> ControlTransfer:
    return ControlTransfer(setup, ep0.read, ep0.write)


def test_control_in_reply_is_cut_to_wlength():
    ep0 = FakeEp0()
    ctl = transfer(ControlSetup(0xA1, 0x01, 0x0300, 0, 4), ep0)  # HID GET_REPORT
    ctl.reply(b"\x01\x02\x03\x04\x05\x06")
    assert ep0.writes == [b"\x01\x02\x03\x04"] and ctl.outcome == "reply"
    with pytest.raises(gadget.GadgetError, match="already answered"):
        ctl.stall()


def test_control_out_receive_and_ack():
    ep0 = FakeEp0()
    ctl = transfer(ControlSetup(0x21, 0x09, 0x0300, 0, 3), ep0)  # HID SET_REPORT
    assert ctl.receive() == b"\x5a" * 3 and ep0.reads == [3]
    ep0 = FakeEp0()
    ctl = transfer(ControlSetup(0x21, 0x0A, 0, 0, 0), ep0)  # HID SET_IDLE: status stage only
    ctl.ack()
    assert ep0.reads == [0]


def test_control_stall_direction_and_el2hlt():
    # ffs_ep0_read on an IN setup stalls; ffs_ep0_write on an OUT setup stalls; both -EL2HLT
    ep0 = FakeEp0(fail=errno.EL2HLT)
    transfer(ControlSetup(0x80, 0x06, 0x2200, 0, 64), ep0).stall()
    assert ep0.reads == [0] and ep0.writes == []
    ep0 = FakeEp0(fail=errno.EL2HLT)
    transfer(ControlSetup(0x21, 0x09, 0, 0, 2), ep0).stall()
    assert ep0.writes == [b""] and ep0.reads == []


def test_control_misuse_is_refused():
    ep0 = FakeEp0()
    with pytest.raises(gadget.GadgetError):
        transfer(ControlSetup(0x21, 0x09, 0, 0, 2), ep0).reply(b"x")
    with pytest.raises(gadget.GadgetError):
        transfer(ControlSetup(0xA1, 0x01, 0, 0, 2), ep0).receive()
    with pytest.raises(gadget.GadgetError):
        transfer(ControlSetup(0x21, 0x09, 0, 0, 2), ep0).ack()


def make_config(**overrides) -> gadget.GadgetConfig:
    fields = dict(
        name="dln2a",
        vendor_id=0xA257,
        product_id=0x2013,
        manufacturer="Diolan",
        product="DLN-2 (emulated)",
        serial="harness-dln2a",
        descriptors=b"",
        strings=b"",
        endpoints=2,
    )
    fields.update(overrides)
    return gadget.GadgetConfig(**fields)


def test_build_tree_writes_gadget_configfs_layout(tmp_path):
    root = tmp_path / "usb_gadget"
    root.mkdir()
    g = gadget.FfsGadget(make_config(), "dummy_udc.0", root=root)
    g.build_tree()
    top = root / "dln2a"
    assert (top / "idVendor").read_text() == "0xa257"
    assert (top / "idProduct").read_text() == "0x2013"
    assert (top / "max_speed").read_text() == "high-speed"
    assert (top / "strings" / "0x409" / "serialnumber").read_text() == "harness-dln2a"
    link = top / "configs" / "c.1" / "ffs.dln2a"
    assert link.is_symlink() and link.resolve() == top / "functions" / "ffs.dln2a"
    assert g.mount_dir == Path("/dev/ffs-dln2a")


def test_build_tree_without_configfs(tmp_path):
    g = gadget.FfsGadget(make_config(), "dummy_udc.0", root=tmp_path / "missing")
    with pytest.raises(gadget.GadgetError, match="libcomposite"):
        g.build_tree()


def test_ep0_events_and_setup_dispatch():
    host, device = socket.socketpair()
    seen: list[str] = []

    def on_setup(ctl: ControlTransfer) -> None:
        ctl.reply(b"\x42\x43")

    g = gadget.FfsGadget(make_config(), "dummy_udc.0", on_setup=on_setup, on_event=seen.append)
    g.ep0 = device.fileno()
    for name, setup in gadget.parse_events(event(2) + event(4, (0xA1, 0x01, 0x0301, 0, 2))):
        g._event(name, setup)
    assert g.enabled.is_set() and seen == ["ENABLE", "SETUP"]
    assert host.recv(16) == b"\x42\x43"
    g._event("DISABLE", None)
    assert not g.enabled.is_set() and g.events == {"ENABLE": 1, "SETUP": 1, "DISABLE": 1}
    host.close()
    device.close()


def test_unanswered_setup_is_stalled_and_recorded():
    host, device = socket.socketpair()
    g = gadget.FfsGadget(make_config(), "dummy_udc.0", on_setup=lambda ctl: None)
    g.ep0 = device.fileno()
    g._event("SETUP", ControlSetup(0x21, 0x09, 0, 0, 0))
    assert g.problems and "stalled" in g.problems[0]
    host.close()
    device.close()


def test_endpoint_io_and_interrupt_of_a_blocked_read():
    assert gadget.install_wake_handler()
    read_fd, write_fd = os.pipe()
    endpoint = gadget.Endpoint(read_fd, 64)
    os.write(write_fd, b"abc")
    assert endpoint.read(64) == 3 and bytes(endpoint.view[:3]) == b"abc"
    outcome: list[int] = []

    def blocked() -> None:
        try:
            endpoint.read(64)
        except OSError as exc:
            outcome.append(exc.errno)

    thread = threading.Thread(target=blocked)
    thread.start()
    deadline = time.monotonic() + 5
    while thread.is_alive() and time.monotonic() < deadline:
        gadget.interrupt(thread)
        thread.join(0.05)
    assert outcome == [errno.EINTR]
    writer = gadget.Endpoint(write_fd, 1)
    assert writer.write(b"xyz") == 3
    endpoint.close()
    writer.close()


def test_interrupt_refuses_without_handler_or_thread():
    assert not gadget.interrupt(threading.Thread(target=lambda: None))  # never started


def test_setup_handler_exception_is_stalled_and_recorded():
    host, device = socket.socketpair()

    def broken(ctl: ControlTransfer) -> None:
        raise KeyError("report 7")

    g = gadget.FfsGadget(make_config(), "dummy_udc.0", on_setup=broken)
    g.ep0 = device.fileno()
    g._event("SETUP", ControlSetup(0x21, 0x09, 0x0307, 0, 0))
    assert "KeyError" in g.problems[0] and "stalled" in g.problems[1]
    host.close()
    device.close()

"""DLN-2 protocol: byte-exact requests as the 6.12 host drivers build them, and the replies.

Requests are written out literally from the drivers' structs (all little endian,
header {size, id, echo, handle}, id = cmd | module << 8) so a layout mistake in
dln2.py cannot hide behind a shared helper.
"""

import os
import select
import struct
import threading
import time

import pipegadget
import pytest

from guest.adapters import dln2
from guest.adapters.chipmodels import Eeprom, SpiNorFlash
from guest.adapters.gadget import GadgetError, install_wake_handler
from guest.fixtures import usb as usbfixtures
from guest.fixtures import usb_i2c


def req(size: int, cmd: int, echo: int, handle: int, payload: bytes = b"") -> bytes:
    msg = struct.pack("<HHHH", size, cmd, echo, handle) + payload
    assert len(msg) == size
    return msg


def rsp(cmd: int, echo: int, handle: int, result: int, payload: bytes = b"") -> bytes:
    return struct.pack("<HHHHH", 10 + len(payload), cmd, echo, handle, result) + payload


def make_device(**kwargs) -> dln2.Dln2Device:
    kwargs.setdefault("i2c", {0x50: Eeprom("24c512", pattern="counter")})
    kwargs.setdefault("flash", SpiNorFlash("w25x05", pattern="random", seed=5))
    return dln2.Dln2Device(**kwargs)


def ask(dev: dln2.Dln2Device, msg: bytes) -> bytes:
    return dev.process(msg)[1]


def result_of(reply: bytes) -> int:
    return struct.unpack_from("<H", reply, 8)[0]


# --- encoding --------------------------------------------------------------------------


def test_header_encode_decode():
    # dln2_prep_buf: hdr->id = cmd, hdr->size = len + 8, hdr->echo = rx slot, hdr->handle
    msg = dln2.encode_request(dln2.I2C_ENABLE, 5, dln2.HANDLE_I2C, b"\x00")
    assert msg == bytes.fromhex("0900 0103 0500 0300 00")
    header = dln2.decode_header(msg)
    assert (header.size, header.id, header.echo, header.handle) == (9, 0x0301, 5, 3)
    assert (header.module, header.command) == (dln2.MODULE_I2C, 0x01)


def test_response_encode_decode():
    reply = dln2.encode_response(0x0030, 2, 1, 0, b"\x00\x02\x00\x00")
    assert reply == bytes.fromhex("0e00 3000 0200 0100 0000 00020000")
    header, result, payload = dln2.decode_response(reply)
    assert (header.size, result, payload) == (14, 0, b"\x00\x02\x00\x00")


def test_command_ids():
    assert dln2.CMD_GET_DEVICE_VER == 0x0030 and dln2.CMD_GET_DEVICE_SN == 0x0031
    assert dln2.GPIO_GET_PIN_COUNT == 0x0101
    assert (dln2.I2C_WRITE, dln2.I2C_READ) == (0x0306, 0x0307)
    assert (dln2.SPI_READ_WRITE, dln2.SPI_READ, dln2.SPI_WRITE) == (0x021A, 0x021B, 0x021C)
    assert dln2.SPI_GET_SUPPORTED_FRAME_SIZES == 0x0243


# --- core probe ------------------------------------------------------------------------


def test_check_hw_and_serial():
    dev = make_device(serial=1234567)
    # dln2_check_hw: _dln2_transfer(DLN2_HANDLE_CTRL, CMD_GET_DEVICE_VER, NULL, 0, &hw_type, 4)
    assert ask(dev, req(8, 0x0030, 0, 1)) == rsp(0x0030, 0, 1, 0, struct.pack("<I", 0x200))
    # dln2_print_serialno: CMD_GET_DEVICE_SN, le32 serial
    assert ask(dev, req(8, 0x0031, 1, 1)) == rsp(0x0031, 1, 1, 0, struct.pack("<I", 1234567))
    assert dev.stats["generic"].requests == 2 and dev.problem_count == 0


def test_reply_echo_and_handle_follow_the_request():
    # dln2_rx routes by handle and echo (the rx slot): both must come back unchanged
    dev = make_device()
    reply = ask(dev, req(8, 0x0030, 15, 1))
    assert struct.unpack_from("<HHHH", reply) == (14, 0x0030, 15, 1)


# --- I2C -------------------------------------------------------------------------------


def i2c_enable(dev):
    # dln2_i2c_enable: struct { u8 port; } on DLN2_HANDLE_I2C
    assert ask(dev, req(9, 0x0301, 0, 3, b"\x00")) == rsp(0x0301, 0, 3, 0)


def i2c_write(addr: int, data: bytes, echo: int = 0) -> bytes:
    # dln2_i2c_write: {u8 port, u8 addr, u8 mem_addr_len = 0, le32 mem_addr = 0, le16 buf_len, buf}
    payload = bytes([0, addr, 0]) + bytes(4) + struct.pack("<H", len(data)) + data
    return req(8 + len(payload), 0x0306, echo, 3, payload)


def i2c_read(addr: int, length: int, echo: int = 0) -> bytes:
    # dln2_i2c_read: same 9-byte header without data; reply {le16 buf_len, buf}
    payload = bytes([0, addr, 0]) + bytes(4) + struct.pack("<H", length)
    return req(17, 0x0307, echo, 3, payload)


def test_i2c_probe_enable_and_remove_disable():
    dev = make_device()
    i2c_enable(dev)
    assert dev.i2c_on
    assert ask(dev, req(9, 0x0302, 1, 3, b"\x00")) == rsp(0x0302, 1, 3, 0)
    assert not dev.i2c_on


def test_i2c_at24_regmap_read():
    # at24_regmap_read -> regmap_i2c_read: write of the 16-bit offset, then a read of
    # at most at24_io_limit (128) bytes; dln2_i2c_xfer turns each i2c_msg into one command.
    dev = make_device()
    i2c_enable(dev)
    assert i2c_write(0x50, b"\x01\x00") == bytes.fromhex(
        "1300 0603 0000 0300 00500000000000020001 00"
    )
    assert ask(dev, i2c_write(0x50, b"\x01\x00", echo=4)) == rsp(0x0306, 4, 3, 0)
    reply = ask(dev, i2c_read(0x50, 128, echo=5))
    assert reply == rsp(0x0307, 5, 3, 0, struct.pack("<H", 128) + bytes(range(128)))
    assert len(reply) == 140  # within DLN2_RX_BUF_SIZE (512)
    stats = dev.stats["i2c"]
    assert (stats.transfers, stats.bytes_read, stats.bytes_written) == (2, 128, 2)


def test_i2c_at24_write_then_read_back():
    dev = make_device()
    i2c_enable(dev)
    assert result_of(ask(dev, i2c_write(0x50, b"\x12\x34\xab"))) == 0
    ask(dev, i2c_write(0x50, b"\x12\x34"))
    assert ask(dev, i2c_read(0x50, 1))[10:] == b"\x01\x00\xab"


def test_i2c_absent_address_nacks_without_problem():
    # _dln2_transfer: result > 0x80 -> -EREMOTEIO; at24_probe's test read then fails (-ENODEV)
    dev = make_device()
    i2c_enable(dev)
    reply = ask(dev, i2c_read(0x51, 1, echo=2))
    assert reply == rsp(0x0307, 2, 3, dln2.RES_I2C_ADDRESS_NACK)
    assert result_of(ask(dev, i2c_write(0x51, b""))) == 0xBA
    assert dev.stats["i2c"].nacks == 2 and dev.stats["i2c"].errors == 2
    assert dev.problem_count == 0


def test_i2c_busy_eeprom_nacks_then_answers():
    dev = make_device(i2c={0x50: Eeprom("24c512", busy_nacks=1)})
    i2c_enable(dev)
    ask(dev, i2c_write(0x50, b"\x00\x00\x55"))
    assert result_of(ask(dev, i2c_write(0x50, b"\x00\x00"))) == 0xBA  # at24 retries
    assert result_of(ask(dev, i2c_write(0x50, b"\x00\x00"))) == 0


def test_i2c_transfer_on_disabled_module_is_a_problem():
    dev = make_device()
    assert result_of(ask(dev, i2c_read(0x50, 1))) == dln2.RES_DISABLED
    assert dev.problem_count == 1 and "disabled" in dev.problems[-1]


def test_i2c_size_mismatch_and_oversize():
    dev = make_device()
    i2c_enable(dev)
    bad = bytes([0, 0x50, 0]) + bytes(4) + struct.pack("<H", 4) + b"\x00"  # says 4, carries 1
    assert result_of(ask(dev, req(18, 0x0306, 0, 3, bad))) == dln2.RES_INVALID_COMMAND_SIZE
    assert result_of(ask(dev, i2c_read(0x50, 257))) == dln2.RES_INVALID_BUFFER_SIZE
    assert dev.problem_count == 2


# --- SPI -------------------------------------------------------------------------------


def spi(cmd: int, payload: bytes, echo: int = 0) -> bytes:
    return req(8 + len(payload), cmd, echo, 4, payload)


def spi_probe(dev) -> int:
    """dln2_spi_probe, step by step; returns bits_per_word_mask as the driver computes it."""
    # dln2_spi_enable(false): {u8 port, u8 wait_for_completion = DLN2_TRANSFERS_WAIT_COMPLETE}
    assert ask(dev, spi(0x0212, b"\x00\x01")) == rsp(0x0212, 0, 4, 0)
    # dln2_spi_get_cs_num: {port} -> {le16 cs_count}
    assert ask(dev, spi(0x0244, b"\x00")) == rsp(0x0244, 0, 4, 0, b"\x04\x00")
    # dln2_spi_get_speed_range: GET_MIN_FREQUENCY / GET_MAX_FREQUENCY -> {le32 speed}
    assert ask(dev, spi(0x0245, b"\x00"))[10:] == struct.pack("<I", 1000)
    assert ask(dev, spi(0x0246, b"\x00"))[10:] == struct.pack("<I", 18_000_000)
    # dln2_spi_get_supported_frame_sizes: rx {u8 count; u8 frame_sizes[36]}, rx_len must be >= 37
    reply = ask(dev, spi(0x0243, b"\x00"))
    assert result_of(reply) == 0 and len(reply) - 10 >= 37
    count = reply[10]
    assert count <= 36
    mask = 0
    for size in reply[11 : 11 + count]:
        mask |= 1 << (size - 1)
    # dln2_spi_cs_enable_all: SS_MULTI_ENABLE {port, GENMASK(num_chipselect - 1, 0)}
    assert ask(dev, spi(0x0238, b"\x00\x0f")) == rsp(0x0238, 0, 4, 0)
    # dln2_spi_enable(true): {port} only (len -= sizeof(wait_for_completion))
    assert ask(dev, spi(0x0211, b"\x00")) == rsp(0x0211, 0, 4, 0)
    return mask


def spi_setup_first_message(dev, cs: int = 0) -> None:
    # dln2_spi_transfer_setup: disable, SET_FREQUENCY {port, le32} -> {le32},
    # SET_MODE {port, mode & 3}, SET_FRAME_SIZE {port, bpw}, enable
    ask(dev, spi(0x0212, b"\x00\x01"))
    reply = ask(dev, spi(0x0218, b"\x00" + struct.pack("<I", 25_000_000)))
    assert reply == rsp(0x0218, 0, 4, 0, struct.pack("<I", 18_000_000))  # rounded down
    assert result_of(ask(dev, spi(0x0214, b"\x00\x00"))) == 0
    assert result_of(ask(dev, spi(0x0216, b"\x00\x08"))) == 0
    ask(dev, spi(0x0211, b"\x00"))
    # dln2_spi_prepare_message -> dln2_spi_cs_set_one: SET_SS {port, ~BIT(cs)}
    assert ask(dev, spi(0x0226, bytes([0, ~(1 << cs) & 0xFF]))) == rsp(0x0226, 0, 4, 0)


def spi_write(data: bytes, leave_low: bool) -> bytes:
    # dln2_spi_write_one: {u8 port, le16 size, u8 attr, buf}
    return spi(0x021C, b"\x00" + struct.pack("<HB", len(data), int(leave_low)) + data)


def spi_read(length: int, leave_low: bool) -> bytes:
    # dln2_spi_read_one: {u8 port, le16 size, u8 attr}; reply {le16 size, buf}
    return spi(0x021B, b"\x00" + struct.pack("<HB", length, int(leave_low)))


def test_spi_probe_frame_sizes():
    dev = make_device()
    assert spi_probe(dev) == 0xFF80  # 8..16 bits per word
    assert dev.spi_on and dev.spi_ss_enabled == 0x0F and dev.problem_count == 0


def test_spi_config_while_enabled_is_rejected():
    dev = make_device()
    spi_probe(dev)
    reply = ask(dev, spi(0x0216, b"\x00\x10"))
    assert result_of(reply) == dln2.RES_MUST_BE_DISABLED
    assert dev.problem_count == 1


def test_spi_nor_read_id():
    # spi_nor_read_id via spi_mem_exec_op: transfer 1 = opcode (tx, not last -> LEAVE_SS_LOW),
    # transfer 2 = 6 ID bytes (rx, last -> attr 0)
    dev = make_device()
    spi_probe(dev)
    spi_setup_first_message(dev)
    assert ask(dev, spi_write(b"\x9f", True)) == rsp(0x021C, 0, 4, 0)
    reply = ask(dev, spi_read(6, False))
    assert reply == rsp(0x021B, 0, 4, 0, bytes.fromhex("0600 ef3010ef3010"))
    assert not dev.spi_ss_low and dev.problem_count == 0


def test_spi_nor_fast_read_4k_split_by_dln2_spi_rdwr():
    # spi_nor_read -> FAST READ 0x0b: opcode, 3 address bytes, 1 dummy (0xff), then a 4096-byte
    # rx transfer that dln2_spi_rdwr cuts into 16 x 256 with LEAVE_SS_LOW on all but the last.
    dev = make_device()
    flash = dev.flash
    spi_probe(dev)
    spi_setup_first_message(dev)
    ask(dev, spi_write(b"\x0b", True))
    ask(dev, spi_write(b"\x00\x40\x00", True))
    ask(dev, spi_write(b"\xff", True))
    data = b""
    for index in range(16):
        reply = ask(dev, spi_read(256, index < 15))
        assert reply[10:12] == b"\x00\x01"
        data += reply[12:]
    assert data == flash.expected(0x4000, 4096)
    stats = dev.stats["spi"]
    assert (stats.transfers, stats.bytes_read, stats.bytes_written) == (19, 4096, 5)
    assert not flash.selected


def test_spi_nor_program_sequence():
    # spi_nor_write: WREN (single transfer), PP opcode/address/data, then RDSR polling
    dev = make_device(flash=SpiNorFlash(pattern="erased"))
    spi_probe(dev)
    spi_setup_first_message(dev)
    ask(dev, spi_write(b"\x06", False))
    ask(dev, spi_write(b"\x02", True))
    ask(dev, spi_write(b"\x00\x01\x00", True))
    ask(dev, spi_write(b"hello", False))
    ask(dev, spi_write(b"\x05", True))
    assert ask(dev, spi_read(1, False))[12:] == b"\x00"
    assert dev.flash.expected(0x100, 5) == b"hello"


def test_spi_read_write_full_duplex():
    dev = make_device()
    spi_probe(dev)
    spi_setup_first_message(dev)
    payload = b"\x00" + struct.pack("<HB", 7, 0) + b"\x9f" + bytes(6)
    reply = ask(dev, spi(0x021A, payload))
    assert reply[10:] == b"\x07\x00\xff\xef\x30\x10\xef\x30\x10"


def test_spi_other_chip_select_reads_ones():
    dev = make_device()
    spi_probe(dev)
    spi_setup_first_message(dev, cs=1)
    ask(dev, spi_write(b"\x9f", True))
    assert ask(dev, spi_read(3, False))[12:] == b"\xff\xff\xff"
    assert dev.flash.commands == 0


def test_spi_transfer_on_disabled_module_is_a_problem():
    dev = make_device()
    assert result_of(ask(dev, spi_read(1, False))) == dln2.RES_DISABLED
    assert dev.problem_count == 1


def test_spi_runtime_suspend_disable_releases_chip_select():
    dev = make_device(flash=SpiNorFlash(pattern="erased"))
    spi_probe(dev)
    spi_setup_first_message(dev)
    ask(dev, spi_write(b"\x06", True))
    ask(dev, spi(0x0212, b"\x00\x01"))  # dln2_spi_runtime_suspend
    assert not dev.flash.selected and dev.flash.wel


# --- GPIO and absent modules -------------------------------------------------------------


def test_gpio_probe_pin_count():
    # dln2_gpio_get_pin_count: dln2_transfer_rx(DLN2_GPIO_GET_PIN_COUNT) -> le16
    dev = make_device()
    assert ask(dev, req(8, 0x0101, 0, 2)) == rsp(0x0101, 0, 2, 0, b"\x20\x00")


def test_gpio_request_and_values():
    # dln2_gpio_request: PIN_ENABLE {le16 pin}, PIN_GET_DIRECTION {le16 pin} -> {le16 pin, u8}
    dev = make_device()
    assert ask(dev, req(10, 0x0110, 0, 2, b"\x03\x00")) == rsp(0x0110, 0, 2, 0)
    assert ask(dev, req(10, 0x0114, 0, 2, b"\x03\x00")) == rsp(0x0114, 0, 2, 0, b"\x03\x00\x00")
    dev.set_gpio_input(3, 1)
    assert ask(dev, req(10, 0x010B, 0, 2, b"\x03\x00"))[10:] == b"\x03\x00\x01"
    # dln2_gpio_direction_output: PIN_SET_OUT_VAL {pin, value}, PIN_SET_DIRECTION {pin, 1}
    ask(dev, req(11, 0x010C, 0, 2, b"\x03\x00\x00"))
    ask(dev, req(11, 0x0113, 0, 2, b"\x03\x00\x01"))
    assert ask(dev, req(10, 0x010B, 0, 2, b"\x03\x00"))[10:] == b"\x03\x00\x00"
    assert ask(dev, req(10, 0x010D, 0, 2, b"\x03\x00"))[10:] == b"\x03\x00\x00"
    assert result_of(ask(dev, req(10, 0x0110, 0, 2, b"\x40\x00"))) == dln2.RES_INVALID_PIN_NUMBER


def test_gpio_disabled_answers_not_supported_quietly():
    dev = make_device(gpio=False)
    reply = ask(dev, req(8, 0x0101, 0, 2))
    assert reply == rsp(0x0101, 0, 2, dln2.RES_COMMAND_NOT_SUPPORTED)  # probe fails -EREMOTEIO
    assert dev.stats["gpio"].unsupported == 1 and dev.problem_count == 0


def test_adc_is_absent_quietly():
    # dln2-adc probe starts with DLN2_ADC_GET_CHANNEL_COUNT = DLN2_CMD(0x01, 0x06), {u8 port}
    dev = make_device()
    assert result_of(ask(dev, req(9, 0x0601, 0, 5, b"\x00"))) == dln2.RES_COMMAND_NOT_SUPPORTED
    assert dev.problem_count == 0


# --- emulator problems ------------------------------------------------------------------


def test_unknown_command_is_answered_and_recorded():
    dev = make_device()
    assert result_of(ask(dev, spi(0x0220, b"\x00"))) == dln2.RES_COMMAND_NOT_SUPPORTED
    assert dev.problem_count == 1 and "0x0220" in dev.problems[-1]


def test_malformed_requests_are_answered_and_recorded():
    dev = make_device()
    assert result_of(ask(dev, req(8, 0x0301, 0, 3))) == dln2.RES_INVALID_COMMAND_SIZE
    wrong_size = struct.pack("<HHHH", 12, 0x0030, 0, 1)
    assert result_of(ask(dev, wrong_size)) == dln2.RES_INVALID_COMMAND_SIZE
    assert dev.process(b"\x01\x02") == ("unknown", None)
    assert ask(dev, req(8, 0x0030, 0, 4))[8:10] == b"\x00\x00"  # wrong handle: noted, answered
    assert dev.problem_count == 4


def test_problem_log_keeps_the_last_few():
    dev = make_device()
    for index in range(40):
        ask(dev, spi(0x0200 | (0x60 + index), b"\x00"))
    assert dev.problem_count == 40 and len(dev.problems) == 16
    assert "0x0287" in dev.problems[-1]


def test_flash_anomalies_become_spi_problems():
    dev = make_device()
    spi_probe(dev)
    spi_setup_first_message(dev)
    ask(dev, spi_write(b"\x20\x00\x00\x00", False))  # erase without WREN
    assert dev.problem_count == 1 and dev.problems[-1].startswith("spi: flash:")


def test_reset_is_a_power_cycle():
    dev = make_device()
    i2c_enable(dev)
    spi_probe(dev)
    dev.reset()
    assert not dev.i2c_on and not dev.spi_on and dev.spi_ss_enabled == 0


# --- message stream ---------------------------------------------------------------------


def test_stream_passes_single_message_through():
    stream = dln2.MessageStream()
    msg = req(9, 0x0301, 0, 3, b"\x00")
    view = memoryview(bytearray(msg))
    assert stream.feed(view) == [view]


def test_stream_splits_and_reassembles():
    stream = dln2.MessageStream()
    one = req(9, 0x0301, 0, 3, b"\x00")
    two = i2c_read(0x50, 4, echo=1)
    assert stream.feed(one + two[:5]) == [one]
    assert stream.feed(two[5:12]) == []
    assert stream.feed(two[12:]) == [two]


def test_stream_drops_impossible_size():
    stream = dln2.MessageStream()
    assert stream.feed(b"\x03\x00\x00\x00\x00\x00\x00\x00\x00") == []
    assert stream.dropped == 9
    msg = req(8, 0x0030, 0, 1)
    assert stream.feed(msg) == [msg]


# --- triggers ---------------------------------------------------------------------------


def at24_reads(echo_base: int, count: int) -> list[bytes]:
    return [i2c_read(0x50, 128, echo=echo_base + i) for i in range(count)]


def test_trigger_withholds_the_reply_that_crosses_the_threshold():
    dev = make_device()
    i2c_enable(dev)
    sent: list[bytes] = []
    actions: list[int] = []
    responder = dln2.Responder(dev, sent.append, lambda: actions.append(len(sent)))
    trigger = responder.arm(dln2.Trigger("i2c", "bytes_read", 256))
    for msg in at24_reads(0, 4):
        responder.serve(msg)
    assert actions == [1]  # fired while handling read 2, before its reply went out
    assert [struct.unpack_from("<H", r, 4)[0] for r in sent] == [0, 2, 3]
    assert trigger.fired.is_set() and trigger.fired_at["bytes_read"] == 256
    assert responder.withheld == 1


def test_trigger_after_reply_and_spi_transfers():
    dev = make_device()
    spi_probe(dev)
    spi_setup_first_message(dev)
    sent: list[bytes] = []
    actions: list[int] = []
    responder = dln2.Responder(dev, sent.append, lambda: None)
    responder.arm(
        dln2.Trigger(
            "spi", "transfers", 2, withhold_reply=False, action=lambda: actions.append(len(sent))
        )
    )
    responder.serve(spi_write(b"\x9f", True))
    responder.serve(spi_read(6, False))
    responder.serve(spi_write(b"\x05", False))
    assert actions == [2] and len(sent) == 3


def test_trigger_action_failure_is_recorded():
    dev = make_device()
    responder = dln2.Responder(dev, lambda reply: None, lambda: None)

    def broken():
        raise OSError(19, "No such device")

    trigger = responder.arm(dln2.Trigger("generic", "requests", 1, action=broken))
    responder.serve(req(8, 0x0030, 0, 1))
    assert trigger.fired.is_set() and "No such device" in trigger.error
    assert dev.problem_count == 1


def test_trigger_rejects_unknown_names():
    responder = dln2.Responder(make_device(), lambda reply: None, lambda: None)
    with pytest.raises(ValueError, match="allowed"):
        responder.arm(dln2.Trigger("i2c", "bytes", 1))
    with pytest.raises(ValueError, match="allowed"):
        responder.arm(dln2.Trigger("uart", "requests", 1))


# --- emulator thread over pipes ------------------------------------------------------------


def PipeGadget() -> pipegadget.PipeGadget:  # noqa: N802 - reads like the class it makes
    return pipegadget.PipeGadget(out_index=0, buffer_size=4096)


def running_emulator(plug: bool = True) -> tuple[pipegadget.PipeGadget, dln2.Emulator]:
    """An emulator serving its pipe endpoints from its own thread, started (and plugged)."""
    assert install_wake_handler()
    gadget = PipeGadget()
    emu = dln2.Emulator(make_device(), gadget=gadget)
    emu.start()
    if plug:
        emu.plug()
    return gadget, emu


def host_transfer(gadget: pipegadget.PipeGadget, msg: bytes) -> bytes:
    """One request and its reply, as the host's dln2 driver sees them."""
    gadget.send(msg)
    size = struct.unpack("<H", gadget.receive(2))[0]
    return struct.pack("<H", size) + gadget.receive(size - 2)


def test_emulator_serves_until_unplugged_mid_read_and_stops_cleanly():
    gadget, emu = running_emulator()
    assert gadget.calls == ["create 4096", "plug"]
    assert host_transfer(gadget, req(8, 0x0030, 0, 1))[10:] == b"\x00\x02\x00\x00"
    host_transfer(gadget, req(9, 0x0301, 0, 3, b"\x00"))
    host_transfer(gadget, i2c_write(0x50, b"\x00\x00"))
    trigger = emu.arm_unplug("i2c", "bytes_read", 256, relative=True)
    reads = at24_reads(0, 3)
    assert host_transfer(gadget, reads[0])[12:] == bytes(range(128))
    os.write(gadget.host_w, reads[1])  # its reply is withheld: the host waits, then we unplug
    assert trigger.fired.wait(5)
    assert gadget.calls[-1] == "unplug" and not gadget.plugged
    assert emu.stats()["withheld_replies"] == 1
    assert emu.stats()["modules"]["i2c"]["bytes_read"] == 256
    time.sleep(0.05)  # the thread is back in read(), blocked: only a signal gets it out
    thread = emu._thread
    assert emu.stop() == []
    assert not thread.is_alive()
    assert gadget.calls[-1] == "destroy"


def test_unplug_brings_a_thread_blocked_in_a_reply_back_to_its_read():
    """CI saw a replug refused: the thread sat in a reply write from the old connection."""
    gadget, emu = running_emulator()
    gadget.jam_in_endpoint()
    gadget.send(req(8, 0x0030, 0, 1))
    deadline = time.monotonic() + 5
    while emu.reads == 0 or emu._in_read:  # it read the request and now blocks replying
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.05)
    assert not emu._in_read
    emu.unplug()
    assert emu._in_read and emu.stats()["dropped_replies"] == 1
    emu.plug()
    assert gadget.calls[-3:] == ["plug", "unplug", "plug"]
    assert emu.stop() == []


def test_data_read_across_an_unplug_is_not_answered_into_the_next_plug():
    """A read begun in one connection that returns once the unplug ended it is stale: no
    reply, and the next read, begun after the unplug, serves the next plug."""
    gadget, emu = running_emulator()
    endpoint = gadget.endpoints[emu.EP_OUT]
    read, before = endpoint.read, emu._generation

    entered = threading.Event()

    def late_read(size: int) -> int:
        """The host's request came in as the connection ended: the thread sees it only then."""
        entered.set()
        count = read(size)
        if count:
            assert emu.wait_until(lambda: emu._generation, before + 1, timeout=5)
            endpoint.read = read
        return count

    endpoint.read = late_read
    assert pipegadget.interrupt_until(emu._thread, entered.is_set)  # a read of the patch
    gadget.send(req(8, 0x0030, 0, 1))
    emu.unplug()
    assert emu.wait_until(lambda: emu.stale_reads, 1, timeout=5)
    emu.plug()
    assert emu.stats()["reads"] == 0 and emu.device.stats["generic"].requests == 0
    assert host_transfer(gadget, req(8, 0x0030, 0, 1))[:2], "the next plug is served"
    assert emu.stop() == []


def test_emulator_plug_needs_a_reading_thread():
    emu = dln2.Emulator(make_device(), gadget=PipeGadget())
    with pytest.raises(GadgetError, match="not reading"):
        emu.plug()
    emu.gadget.destroy()


def test_emulator_wait_counter():
    gadget, emu = running_emulator(plug=False)
    worker = threading.Thread(target=host_transfer, args=(gadget, req(8, 0x0031, 0, 1)))
    worker.start()
    assert emu.wait_counter("generic", "requests", 1, timeout=5)
    assert not emu.wait_counter("generic", "requests", 2, timeout=0.05)
    worker.join()
    assert emu.stop() == []


def test_dln2_descriptors():
    blob = dln2.dln2_descriptors()
    magic, length, flags, fs_count, hs_count = struct.unpack_from("<5I", blob)
    assert (magic, length, flags, fs_count, hs_count) == (3, 66, 3, 3, 3)
    # dln2_probe: bInterfaceNumber must be 0; usb_find_common_endpoints: one bulk in, one bulk out
    fs_interface = blob[20:29]
    assert fs_interface[2] == 0 and fs_interface[5] == 0xFF
    assert blob[29:36] == bytes.fromhex("0705 01 02 4000 00")
    assert blob[36:43] == bytes.fromhex("0705 82 02 4000 00")
    assert blob[52:59] == bytes.fromhex("0705 01 02 0002 00")
    assert blob[59:66] == bytes.fromhex("0705 82 02 0002 00")
    config = dln2.dln2_gadget_config("dln2a", "harness-dln2a")
    assert (config.vendor_id, config.product_id, config.endpoints) == (0xA257, 0x2013, 2)


def test_eeprom_fixture_unplugs_halfway_through_the_read_in_progress():
    """point: halfway aims at the middle of a 4 KiB read from the EEPROM's address pointer."""
    assert install_wake_handler()
    spec = usb_i2c.Spec("eeprom0", "usb-i2c", adapter="dln2", eeprom="24c512", address=0x50)
    fixture = usb_i2c.UsbI2cEeprom(spec, "t", "u", {})
    gadget = PipeGadget()
    emu = fixture.emulator = dln2.Emulator(fixture.device, gadget=gadget)
    emu.start()
    emu.plug()
    host_transfer(gadget, req(9, 0x0301, 0, 3, b"\x00"))
    host_transfer(gadget, i2c_write(0x50, b"\x00\x00"))
    for msg in at24_reads(0, 5):  # the reader is 640 bytes into its first 4 KiB read
        host_transfer(gadget, msg)
    done = threading.Event()

    def reader():  # keeps reading until a reply stops coming (withheld at the unplug)
        while not emu.responder.armed():
            time.sleep(0.001)
        for msg in at24_reads(5, 64):
            gadget.send(msg)
            if not select.select([gadget.host_r], [], [], 0.5)[0]:
                break
            size = struct.unpack("<H", gadget.receive(2))[0]
            gadget.receive(size - 2)
        done.set()

    threading.Thread(target=reader, daemon=True).start()
    landed = fixture.unplug("halfway", 0, timeout=5, block_size=128 * 1024)  # kernfs: 4 KiB
    assert landed["count"] == 2048 - 640 and landed["position_in_read"] == 2048
    assert landed["mid_read"] and landed["emulator_counters"]["bytes_read"] == 2048
    assert gadget.calls[-1] == "unplug" and not fixture.present()
    assert done.wait(5)
    assert emu.stop() == []


def test_workers_sharing_a_written_chip_take_turns_in_arrival_order():
    """A 4 KiB reader queued behind big reads gets its turn; nobody cuts in."""
    lock = usbfixtures.FairLock()
    order: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def first() -> None:
        with lock.held():
            holding.set()
            release.wait(5)
            order.append("first")

    def queued(name: str) -> None:
        with lock.held():
            order.append(name)

    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert holding.wait(5)
    for index, name in enumerate(["reader-4k", "reader-1m", "writer"]):
        thread = threading.Thread(target=queued, args=(name,))
        thread.start()
        threads.append(thread)
        while lock._next < index + 2:  # wait until it holds its ticket
            time.sleep(0.001)
    release.set()
    for thread in threads:
        thread.join(5)
    assert order == ["first", "reader-4k", "reader-1m", "writer"]

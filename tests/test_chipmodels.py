"""EEPROM and SPI NOR models: the semantics at24 and spi-nor rely on, byte by byte."""

import datetime

import pytest

from guest.adapters import chipmodels
from guest.adapters.chipmodels import Eeprom, SpiNorFlash


def test_patterns():
    assert chipmodels.initial_content("counter", 300)[:3] == b"\x00\x01\x02"
    assert chipmodels.initial_content("counter", 300)[256:259] == b"\x00\x01\x02"
    assert len(chipmodels.initial_content("counter", 300)) == 300
    assert chipmodels.initial_content("zero", 4) == bytes(4)
    assert chipmodels.initial_content("erased", 4) == b"\xff" * 4
    one = chipmodels.initial_content("random", 4096, seed=7)
    assert one == chipmodels.initial_content("random", 4096, seed=7)
    assert one != chipmodels.initial_content("random", 4096, seed=8)
    with pytest.raises(ValueError, match="allowed"):
        chipmodels.initial_content("stripes", 4)


def test_first_mismatch():
    assert chipmodels.first_mismatch(b"abc", b"abc") is None
    assert chipmodels.first_mismatch(b"abc", b"abd") == 2
    assert chipmodels.first_mismatch(b"abc", b"ab") == 2


# --- EEPROM ----------------------------------------------------------------------------


def test_eeprom_sizes_match_at24():
    # at24.c: AT24_CHIP_DATA(at24_data_24c32, 32768 / 8, ...) ... (at24_data_24c512, 524288 / 8)
    sizes = {name: t.size for name, t in chipmodels.EEPROM_TYPES.items()}
    assert sizes == {
        "24c32": 4096,
        "24c64": 8192,
        "24c128": 16384,
        "24c256": 32768,
        "24c512": 65536,
    }
    assert Eeprom("24c512").page_size == 128
    assert Eeprom("24c32").page_size == 32


def test_eeprom_regmap_read_sequence():
    # at24_regmap_read -> regmap_i2c_read: msg 0 = 2 address bytes (write), msg 1 = read;
    # i2c-dln2 sends them as one DLN2_I2C_WRITE and one DLN2_I2C_READ.
    rom = Eeprom("24c512", pattern="counter")
    assert rom.i2c_write(bytes([0x01, 0x7F]))
    assert rom.i2c_read(4) == bytes([0x7F, 0x80, 0x81, 0x82])
    assert rom.pointer == 0x183


def test_eeprom_sequential_read_crosses_pages_and_rolls_over():
    rom = Eeprom("24c512", pattern="random", seed=3)
    rom.i2c_write(bytes([0x07, 0xF0]))
    assert rom.i2c_read(300) == rom.expected(0x7F0, 300)
    rom.i2c_write(bytes([0xFF, 0xFE]))
    assert rom.i2c_read(4) == rom.expected(0xFFFE, 2) + rom.expected(0, 2)
    assert rom.pointer == 2


def test_eeprom_current_address_read_continues():
    rom = Eeprom("24c64")
    rom.i2c_write(b"\x00\x10")
    rom.i2c_read(2)
    assert rom.i2c_read(2) == bytes([0x12, 0x13])


def test_eeprom_unused_address_bits_ignored():
    rom = Eeprom("24c32")  # 4 KiB: A15..A12 are don't-care
    rom.i2c_write(bytes([0xF0, 0x05]))
    assert rom.pointer == 0x005
    assert rom.i2c_read(1) == b"\x05"


def test_eeprom_byte_write_like_at24_page_size_1():
    # at24_probe: no "pagesize" property -> page_size 1 -> one data byte per message
    rom = Eeprom("24c512", pattern="zero")
    for offset, value in enumerate(b"hello"):
        assert rom.i2c_write(bytes([0x12, 0x34 + offset, value]))
    rom.i2c_write(b"\x12\x34")
    assert rom.i2c_read(5) == b"hello"
    assert rom.expected(0x1234, 5) == b"hello"


def test_eeprom_page_write_wraps_within_page():
    rom = Eeprom("24c512", pattern="zero")  # 128-byte pages
    assert rom.i2c_write(bytes([0x00, 0x7E]) + b"ABCD")
    assert rom.expected(0x7E, 2) == b"AB"
    assert rom.expected(0x00, 2) == b"CD"
    assert rom.expected(0x80, 2) == b"\0\0"  # next page untouched
    assert rom.pointer == 0x02  # last written + 1, inside the page


def test_eeprom_write_cycle_nacks():
    rom = Eeprom("24c512", busy_nacks=2)
    assert rom.i2c_write(b"\x00\x00\xaa")
    assert rom.i2c_write(b"\x00\x00") is False
    assert rom.i2c_read(1) is None
    assert rom.i2c_write(b"\x00\x00")
    assert rom.i2c_read(1) == b"\xaa"


def test_eeprom_power_cycle_resets_pointer_keeps_data():
    rom = Eeprom("24c512", pattern="zero")
    rom.i2c_write(b"\x00\x05\x99")
    rom.power_cycle()
    assert rom.pointer == 0
    assert rom.expected(5, 1) == b"\x99"


# --- SPI NOR ---------------------------------------------------------------------------


def command(flash: SpiNorFlash, *pieces: bytes) -> list[bytes]:
    """One chip-select window, each piece a separate transfer (as spi-mem sends them)."""
    flash.select()
    out = [flash.transfer(piece) for piece in pieces]
    flash.deselect()
    return out


def test_flash_ids_from_winbond_table():
    # winbond.c: SNOR_ID(0xef, 0x30, 0x10) "w25x05" .size = SZ_64K
    flash = SpiNorFlash("w25x05")
    assert flash.jedec_id == b"\xef\x30\x10" and flash.size == 65536


def test_read_id_six_bytes():
    # spi_nor_detect -> spi_nor_read_id: SPI_NOR_READID_OP(0, 0, id, SPI_NOR_MAX_ID_LEN = 6)
    flash = SpiNorFlash()
    out = command(flash, b"\x9f", bytes(6))
    assert out == [b"\xff", b"\xef\x30\x10\xef\x30\x10"]


def test_read_id_split_over_transfers():
    flash = SpiNorFlash()
    assert command(flash, b"\x9f", bytes(2), bytes(2)) == [b"\xff", b"\xef\x30", b"\x10\xef"]


def test_fast_read_split_like_spi_mem():
    # spi_mem_exec_op without mem_ops: opcode, address, dummy (0xff) and data are separate
    # spi_transfers; dln2_spi_rdwr splits the data into 256-byte pieces with SS held low.
    flash = SpiNorFlash(pattern="random", seed=1)
    pieces = [b"\x0b", b"\x00\x12\x34", b"\xff"] + [bytes(256)] * 4 + [bytes(10)]
    out = command(flash, *pieces)
    assert out[:3] == [b"\xff", b"\xff" * 3, b"\xff"]
    assert b"".join(out[3:]) == flash.expected(0x1234, 1034)


def test_fast_read_command_split_inside_address():
    flash = SpiNorFlash(pattern="random", seed=2)
    out = command(flash, b"\x0b\x00", b"\x01", b"\x00\xff\x00\x00")
    assert out[2][2:] == flash.expected(0x100, 2)


def test_read_wraps_at_end_of_chip():
    flash = SpiNorFlash(pattern="random", seed=4)
    out = command(flash, b"\x03\x00\xff\xfe", bytes(4))
    assert out[1] == flash.expected(0xFFFE, 2) + flash.expected(0, 2)


def test_read_address_above_size_wraps():
    flash = SpiNorFlash(pattern="counter")
    assert command(flash, b"\x03\x01\x00\x05", bytes(1))[1] == b"\x05"


def test_wren_wrdi_and_status():
    flash = SpiNorFlash()
    assert command(flash, b"\x05", bytes(1))[1] == b"\x00"
    command(flash, b"\x06")
    assert command(flash, b"\x05", bytes(2))[1] == b"\x02\x02"
    command(flash, b"\x04")
    assert flash.status == 0


def test_wren_takes_effect_at_deselect_only():
    flash = SpiNorFlash()
    flash.select()
    flash.transfer(b"\x06")
    assert not flash.wel
    flash.deselect()
    assert flash.wel


def test_page_program_needs_wel_and_only_clears_bits():
    flash = SpiNorFlash(pattern="erased")
    command(flash, b"\x02\x00\x01\x00", b"\x12\x34")
    assert flash.expected(0x100, 2) == b"\xff\xff"
    assert flash.anomalies == 1 and "WRITE ENABLE" in flash.recent[-1]
    command(flash, b"\x06")
    command(flash, b"\x02", b"\x00\x01\x00", b"\x12\x34")
    assert flash.expected(0x100, 2) == b"\x12\x34"
    assert not flash.wel
    command(flash, b"\x06")
    command(flash, b"\x02\x00\x01\x00", b"\xf0\x0f")
    assert flash.expected(0x100, 2) == b"\x10\x04"


def test_page_program_wraps_in_page_and_keeps_last_256():
    flash = SpiNorFlash(pattern="erased")
    command(flash, b"\x06")
    command(flash, b"\x02\x00\x02\xfe", b"ABCD")
    assert flash.expected(0x2FE, 2) == b"AB"
    assert flash.expected(0x200, 2) == b"CD"
    assert flash.expected(0x300, 1) == b"\xff"
    flash = SpiNorFlash(pattern="erased")
    command(flash, b"\x06")
    data = bytes(range(256)) + b"\x00\x01"  # 258 bytes: the first two are overwritten
    command(flash, b"\x02\x00\x00\x00", data)
    assert flash.expected(0, 256) == b"\x00\x01" + bytes(range(2, 256))


def test_program_happens_at_deselect():
    flash = SpiNorFlash(pattern="erased")
    command(flash, b"\x06")
    flash.select()
    flash.transfer(b"\x02\x00\x00\x00")
    flash.transfer(b"\x00")
    assert flash.expected(0, 1) == b"\xff"
    flash.deselect()
    assert flash.expected(0, 1) == b"\x00"


def test_sector_block_and_chip_erase():
    flash = SpiNorFlash(pattern="zero")
    command(flash, b"\x06")
    command(flash, b"\x20\x00\x12\x34")
    assert flash.expected(0x1000, 0x1000) == b"\xff" * 0x1000
    assert flash.expected(0x0FFF, 1) == b"\0" and flash.expected(0x2000, 1) == b"\0"
    command(flash, b"\x06")
    command(flash, b"\xd8\x00\x00\x00")
    assert flash.expected() == b"\xff" * 65536
    for opcode in (b"\xc7", b"\x60"):
        flash = SpiNorFlash(pattern="zero")
        command(flash, b"\x06")
        command(flash, opcode)
        assert flash.expected() == b"\xff" * 65536


def test_erase_with_extra_bytes_is_ignored():
    flash = SpiNorFlash(pattern="zero")
    command(flash, b"\x06")
    command(flash, b"\x20\x00\x00\x00\x00")
    assert flash.expected(0, 1) == b"\0"
    assert "extra bytes" in flash.recent[-1]


def test_wip_clears_after_polls_and_blocks_other_commands():
    # spi_nor_wait_till_ready polls READ STATUS until WIP (bit 0) clears.
    flash = SpiNorFlash(pattern="counter", busy_polls=2)
    command(flash, b"\x06")
    command(flash, b"\x20\x00\x00\x00")
    assert command(flash, b"\x03\x00\x00\x00", bytes(1))[1] == b"\xff"  # ignored while busy
    assert "while busy" in flash.recent[-1]
    assert command(flash, b"\x05", bytes(1))[1] == b"\x03"  # WIP | WEL
    assert command(flash, b"\x05", bytes(2))[1] == b"\x03\x00"
    assert command(flash, b"\x03\x00\x00\x00", bytes(1))[1] == b"\xff"  # erased now


def test_wip_clears_after_simulated_time():
    now = [100.0]
    flash = SpiNorFlash(busy_seconds=0.5, clock=lambda: now[0])
    command(flash, b"\x06")
    command(flash, b"\xc7")
    assert flash.status & chipmodels.SR_WIP
    now[0] += 0.6
    assert flash.status == 0


def test_opcodes_outside_the_w25x_set_are_ignored_like_the_real_part():
    # SFDP (0x5a) and READ CONFIGURATION REGISTER (0x35, which spi-nor in 7.3 sends
    # to lock-capable parts): a W25X ignores both and leaves MISO undriven (reads 1s)
    flash = SpiNorFlash()
    assert command(flash, b"\x5a\x00\x00\x00\x00", bytes(4))[1] == b"\xff" * 4
    assert command(flash, b"\x35", bytes(1))[1] == b"\xff"
    assert flash.anomalies == 0 and flash.ignored_opcodes == {0x5A: 1, 0x35: 1}
    assert command(flash, b"\x9f", bytes(3))[1] == flash.jedec_id  # the next command is served


def test_power_cycle_drops_command_and_latches():
    flash = SpiNorFlash(pattern="erased")
    command(flash, b"\x06")
    flash.select()
    flash.transfer(b"\x02\x00\x00\x00\x00")
    flash.power_cycle()
    flash.deselect()
    assert flash.expected(0, 1) == b"\xff" and not flash.wel


# --- DS1307 RTC ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def read_time(rtc: chipmodels.Ds1307) -> bytes:
    """What ds1307_get_time() does: set the pointer to 0, read the seven time registers."""
    assert rtc.i2c_write(b"\x00")
    return rtc.i2c_read(7)


def test_rtc_time_registers_are_bcd_and_count_on_with_the_clock():
    clock = Clock()
    rtc = chipmodels.Ds1307(datetime.datetime(2026, 12, 31, 23, 59, 58), clock=clock)
    assert read_time(rtc) == bytes([0x58, 0x59, 0x23, 5, 0x31, 0x12, 0x26])  # a Thursday
    clock.now += 3
    assert read_time(rtc) == bytes([0x01, 0x00, 0x00, 6, 0x01, 0x01, 0x27])
    assert rtc.time_reads == 2


def test_rtc_set_time_as_ds1307_set_time_writes_it_and_the_clock_halt_bit_stops_it():
    clock = Clock()
    rtc = chipmodels.Ds1307(clock=clock)
    assert rtc.i2c_write(bytes([0x00, 0x30, 0x15, 0x10, 2, 0x07, 0x12, 0x26]))
    clock.now += 5
    assert read_time(rtc)[:3] == bytes([0x35, 0x15, 0x10])
    assert rtc.i2c_write(bytes([0x00, 0x30 | chipmodels.RTC_BIT_CH]))
    clock.now += 5
    assert read_time(rtc)[0] == 0x30 | chipmodels.RTC_BIT_CH, "halted: the seconds stand still"
    assert not rtc.anomalies


def test_rtc_ram_keeps_its_bytes_across_power_loss_and_the_pointer_wraps():
    rtc = chipmodels.Ds1307(clock=Clock())
    assert rtc.i2c_write(b"\x08" + bytes(range(56)))  # nvram_offset 8, nvram_size 56
    assert rtc.pointer == 0, "wrapped from 0x3f to 0x00"
    rtc.power_cycle()
    assert rtc.i2c_write(b"\x3e") and rtc.i2c_read(3) == bytes([54, 55, 0x00])
    assert rtc.i2c_write(b"\x08") and rtc.i2c_read(56) == bytes(range(56))

"""GPIO character device uAPI (v2) and the gpio-sim configfs fixture.

Struct layouts and ioctl numbers follow include/uapi/linux/gpio.h (sizes checked
against the C headers: line_request 592, line_config 272, line_values 16,
line_event 48, chip_info 68 bytes). Standard library only: this runs in the guest.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import subprocess
import time
from pathlib import Path

import fixtures
from fixtures import FixtureError

GPIO_V2_LINES_MAX = 64
GPIO_V2_LINE_NUM_ATTRS_MAX = 10

FLAG_INPUT = 1 << 2
FLAG_EDGE_RISING = 1 << 4
FLAG_EDGE_FALLING = 1 << 5


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


def request_lines(chip_fd: int, offsets: list[int], edges: bool, consumer: str) -> int:
    """Request ``offsets`` as inputs (with both-edge detection if ``edges``); return the line fd."""
    req = LineRequest()
    for i, offset in enumerate(offsets):
        req.offsets[i] = offset
    req.num_lines = len(offsets)
    req.consumer = consumer.encode()[:31]
    req.config.flags = FLAG_INPUT | ((FLAG_EDGE_RISING | FLAG_EDGE_FALLING) if edges else 0)
    fcntl.ioctl(chip_fd, GET_LINE, req)
    return req.fd


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


CONFIGFS = Path("/sys/kernel/config/gpio-sim")
CONSUMER = Path("/sys/kernel/debug/gpio_consumer")  # guest/modules/gpio_consumer
SIM_DRIVER = Path("/sys/bus/platform/drivers/gpio-sim")


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def wp_lookup(modules: dict[str, str], dev_id: str, label: str = "", line: int = 0) -> None:
    """Register (or, without a label, drop) a "wp" GPIO lookup for device ``dev_id``:
    nvmem_register() then takes that gpio-sim line as the write-protect GPIO."""
    fixtures.insmod(modules, "gpio_consumer", CONSUMER / "wp")
    _write(CONSUMER / "wp", f"{dev_id} {label} {line}" if label else dev_id)


class KernelConsumer:
    """guest/modules/gpio_consumer: holds one line with gpiod_get(), as a driver would."""

    def __init__(self, modules: dict[str, str], bank_label: str, line: int):
        self.modules = modules
        self.label = bank_label
        self.line = line

    def attach(self) -> None:
        fixtures.insmod(self.modules, "gpio_consumer", CONSUMER / "attach")
        try:
            _write(CONSUMER / "attach", f"{self.label} {self.line}")
        except OSError as exc:
            raise FixtureError(
                f"gpio_consumer could not take line {self.line} of {self.label}: {exc.strerror}"
            ) from exc
        holder = line_consumer(self.label, self.line)
        if holder != "harness":
            raise FixtureError(
                f"line {self.line} of {self.label} is held by {holder or 'nobody'}, not by "
                "gpio_consumer"
            )

    def detach(self) -> None:
        """gpiod_put() the held descriptor, also one of a chip that is gone."""
        if (CONSUMER / "detach").exists():
            _write(CONSUMER / "detach", "")

    def unload(self) -> None:
        """rmmod: the module's descriptors and lookups must go cleanly after a removal."""
        self.detach()
        out = subprocess.run(["rmmod", "gpio_consumer"], capture_output=True, text=True)
        if out.returncode != 0:
            raise FixtureError(f"rmmod gpio_consumer failed: {out.stderr.strip()}")


class GpioSim:
    """A gpio-sim chip defined through configfs. ``live`` creates/removes the device.

    With ``kernel_consumer`` a line is held by guest/modules/gpio_consumer
    across the removal; re-creation hands it the new chip's line.
    """

    def __init__(
        self,
        name: str,
        banks: list[dict],
        instance: str,
        consumer: KernelConsumer | None = None,
    ):
        self.name = name
        self.banks = banks
        self.consumer = consumer
        self.dir = CONFIGFS / instance
        self.device: str | None = None  # platform device, e.g. gpio-sim.0
        self.chips: list[str] = []  # gpiochipN per bank

    # --- the Fixture interface (guest/fixtures.py) -----------------------------

    def setup(self) -> None:
        self.define()
        self.set_live(True)
        self.wait_ready()
        if self.consumer:
            self.consumer.attach()

    def present(self) -> bool:
        return self.is_live()

    def remove(self) -> None:
        self.set_live(False)

    def create(self) -> None:
        if not self.is_live():
            self.set_live(True)
        self.wait_ready()
        if self.consumer:  # it still holds the removed chip's descriptor: put it, take the new
            self.consumer.detach()
            self.consumer.attach()

    def unbind(self, level: str | None = None) -> None:
        _write(SIM_DRIVER / "unbind", self._require_device())

    def bind(self, level: str | None = None) -> None:
        _write(SIM_DRIVER / "bind", self._require_device())
        self.wait_ready()

    def perform(self, action: dict, step: int) -> None:
        if action["do"] == "set-pull":
            self.set_pull(action["bank"], action["line"], action["pull"])
        elif action["do"] == "toggle-pull":
            self.set_pull(action["bank"], action["line"], ("pull-up", "pull-down")[step % 2])
        else:
            raise FixtureError(f"fixture {self.name}: gpio-sim cannot {action['do']}")

    def identity(self) -> str:
        """The kernel-assigned name of the provider, e.g. 'gpiochip0'.

        gpiolib frees a chip's number only when its last reference is gone, so
        a number that keeps growing across re-creations means a leaked reference.
        """
        return ",".join(self.chips)

    def values(self) -> dict[str, str]:
        held = str(CONSUMER / "toggle") if self.consumer else ""
        return {
            "dev": self.dev(0) if self.chips else "",
            "device": self.device or "",
            "kernel_consumer": held,
        }

    def teardown(self) -> None:
        try:
            if self.consumer:
                self.consumer.unload()
        finally:
            self.destroy()

    # --- gpio-sim specifics ------------------------------------------------------

    def define(self) -> None:
        if not CONFIGFS.is_dir():
            raise FixtureError(f"{CONFIGFS} missing: gpio-sim not built in or configfs not mounted")
        self.dir.mkdir()
        for index, bank in enumerate(self.banks):
            bdir = self.dir / f"bank{index}"
            bdir.mkdir()
            _write(bdir / "num_lines", str(bank["lines"]))
            _write(bdir / "label", bank["label"])
            for line, line_name in enumerate(bank.get("names", ())):
                ldir = bdir / f"line{line}"
                ldir.mkdir()
                _write(ldir / "name", line_name)

    def set_live(self, live: bool) -> None:
        _write(self.dir / "live", "1" if live else "0")

    def is_live(self) -> bool:
        return (self.dir / "live").read_text().strip() == "1"

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Ready = every bank's /dev/gpiochipN exists and reports the configured label and lines."""
        deadline = time.monotonic() + timeout
        problem = "not checked"
        while time.monotonic() < deadline:
            problem = self._probe()
            if not problem:
                return
            time.sleep(0.05)
        raise FixtureError(f"fixture {self.name}: not ready after {timeout:.0f} s: {problem}")

    def _probe(self) -> str:
        self.device = (self.dir / "dev_name").read_text().strip() or None
        if not self.device:
            return "configfs dev_name is empty (device not created)"
        chips = []
        for index, bank in enumerate(self.banks):
            chip = (self.dir / f"bank{index}" / "chip_name").read_text().strip()
            node = Path("/dev") / chip
            if not chip or not node.exists():
                return f"bank{index}: no character device ({node if chip else 'chip_name empty'})"
            fd = os.open(node, os.O_RDONLY)
            try:
                info = chip_info(fd)
            finally:
                os.close(fd)
            if info.label.decode() != bank["label"] or info.lines != bank["lines"]:
                return (
                    f"bank{index}: {node} reports label {info.label.decode()!r} with "
                    f"{info.lines} lines, expected {bank['label']!r} with {bank['lines']}"
                )
            chips.append(chip)
        self.chips = chips
        return ""

    def dev(self, bank: int = 0) -> str:
        return f"/dev/{self.chips[bank]}"

    def _require_device(self) -> str:
        if not self.device:
            raise FixtureError(f"fixture {self.name}: no device to (un)bind; it was never live")
        return self.device

    def set_pull(self, bank: int, line: int, pull: str) -> None:
        attr = Path("/sys/devices/platform") / self._require_device() / self.chips[bank]
        _write(attr / f"sim_gpio{line}" / "pull", pull)

    def destroy(self) -> None:
        """Take the chip down (if live) and remove its configfs tree."""
        if not self.dir.exists():
            return
        try:
            if self.is_live():
                self.set_live(False)
        except OSError:
            pass
        for index in range(len(self.banks)):
            bdir = self.dir / f"bank{index}"
            for ldir in sorted(bdir.glob("line*")):
                for hog in ldir.glob("hog"):
                    hog.rmdir()
                ldir.rmdir()
            if bdir.exists():
                bdir.rmdir()
        self.dir.rmdir()

"""Fixtures behind an emulated USB adapter: an I2C EEPROM (DLN-2 or CP2112), a SPI-NOR (DLN-2).

The adapter is emulated in the guest (guest/dln2.py, guest/cp2112.py) on a
FunctionFS gadget bound to a dummy_hcd UDC; the kernel's own dln2/i2c-dln2/
spi-dln2 or usbhid/hid-cp2112 drivers bind to it, and at24 or spi-nor to the
chip behind it. Remove = unplug (unbind the UDC); create = plug again,
re-instantiate the chip and check that it reads back the model's content.
"""

from __future__ import annotations

import glob
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chipmodels
import cp2112
import dln2
import fixtures
import gpio
from fixtures import FixtureError
from gadget import GadgetError
from waits import poll

I2C_DRIVERS = Path("/sys/bus/i2c/drivers")
I2C_DEVICES = Path("/sys/bus/i2c/devices")
HID_DRIVERS = Path("/sys/bus/hid/drivers")
PLATFORM_DRIVERS = Path("/sys/bus/platform/drivers")
USB_DRIVERS = Path("/sys/bus/usb/drivers")
SPI_DRIVERS = Path("/sys/bus/spi/drivers")
ATTACH = Path("/sys/kernel/debug/spi_nor_attach/new_device")
CONSUMER = Path("/sys/kernel/debug/nvmem_consumer")
READY_BYTES = 512  # compared with the model at every (re)creation
READY_TIMEOUT = 20.0


class FairLock:
    """One I/O call at a time on a chip a write-read-back worker shares, in arrival order.

    The workers wait here, in user space (a futex, not D state), so the
    kernel's own per-device mutex is never contended: a reader queued in
    spi_nor_read() behind a 1 MiB read (about 19 s under TCG) would trip the
    20 s hung-task detector on a slow machine. FIFO order keeps a 4 KiB reader
    from starving behind the big reads that a plain lock lets cut in.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = 0
        self._serving = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._cond:
            ticket = self._next
            self._next += 1
            self._cond.wait_for(lambda: self._serving == ticket)
        try:
            yield
        finally:
            with self._cond:
                self._serving += 1
                self._cond.notify_all()


# kernfs serves a sysfs binary attribute (nvmem, eeprom) a page per read() at most.
SYSFS_READ_MAX = 4096


def _wait_for(predicate, timeout: float, what: str):
    value = poll(predicate, timeout)
    if not value:
        raise FixtureError(f"{what} did not appear within {timeout:g} s")
    return value


def _check_content(name: str, path: str, chip: Any) -> None:
    """The first READY_BYTES of ``path`` must be the chip model's: the fixture really answers."""
    fd = os.open(path, os.O_RDONLY)
    try:
        got = os.pread(fd, READY_BYTES, 0)
    finally:
        os.close(fd)
    at = chipmodels.first_mismatch(chip.expected(0, READY_BYTES), got)
    if at is not None:
        raise FixtureError(f"fixture {name}: {path} differs from the model at byte {at}")


def new_i2c_device(adapter: str, chip: str, address: int, root: Path = I2C_DEVICES) -> str:
    """Instantiate e.g. at24 ("24c512", 0x50) on ``adapter``; returns the client name N-00AA."""
    (root / adapter / "new_device").write_text(f"{chip} {address:#04x}")
    return f"{adapter.removeprefix('i2c-')}-{address:04x}"


def _first(paths) -> Path | None:
    return next(iter(sorted(paths)), None)


@dataclass(frozen=True)
class AdapterKind:
    """What differs between the emulated adapters, as the fixtures need it."""

    emulator: Callable[..., Any]  # (device, udc=, name=) -> an AdapterEmulator
    i2c_device: Callable[[dict], Any]  # {address: target} -> the emulator's device model
    find_i2c_adapter: Callable[[Path], str | None]  # USB interface -> i2c-N
    i2c_provider: Callable[[Path], tuple[Path, str]]  # interface -> (driver dir, device) of
    # the layer that registers the I2C adapter: unbinding it deletes the adapter
    interface_driver: str  # the USB interface's driver
    arm_unplug: Callable[..., Any]  # (emulator, bus, counter, count, action) -> armed Trigger


def _dln2_i2c_provider(interface: Path) -> tuple[Path, str]:
    pdev = _first(interface.glob("dln2-i2c.*"))
    return PLATFORM_DRIVERS / "dln2-i2c", pdev.name if pdev else ""


def _cp2112_i2c_provider(interface: Path) -> tuple[Path, str]:
    hid = cp2112.find_hid_device(interface)
    return HID_DRIVERS / cp2112.DRIVER, hid.name if hid else ""


ADAPTERS = {
    "dln2": AdapterKind(
        emulator=dln2.Emulator,
        i2c_device=lambda targets: dln2.Dln2Device(i2c=targets, gpio=False),
        find_i2c_adapter=dln2.find_i2c_adapter,
        i2c_provider=_dln2_i2c_provider,
        interface_driver="dln2",
        arm_unplug=lambda emu, bus, counter, count, action: emu.arm_unplug(
            bus, counter, count, relative=True, action=action
        ),
    ),
    "cp2112": AdapterKind(
        emulator=cp2112.Emulator,
        i2c_device=lambda targets: cp2112.Cp2112Device(i2c=targets),
        find_i2c_adapter=cp2112.find_i2c_adapter,
        i2c_provider=_cp2112_i2c_provider,
        interface_driver="usbhid",
        arm_unplug=lambda emu, bus, counter, count, action: emu.arm_unplug(
            counter, count, relative=True, action=action
        ),
    ),
}


class UsbAdapterFixture:
    """Common part: one emulated adapter per fixture, on the UDC the runner assigns."""

    def __init__(self, spec: dict, instance: str, udc: str, modules: dict[str, str]):
        self.name = spec["name"]
        self.spec = spec
        self.modules = modules
        self.kind = ADAPTERS[spec["adapter"]]
        self.device = self._device()
        self.emulator = self.kind.emulator(self.device, udc=udc, name=instance[-16:])
        self.interface: Path | None = None
        self.started = False
        self.io_lock = FairLock()  # write-read-back workers vs verifying readers

    def _device(self) -> Any:
        raise NotImplementedError

    def _attach(self) -> None:
        """Instantiate the chip on the freshly bound adapter and check its content."""
        raise NotImplementedError

    def setup(self) -> None:
        self.emulator.start()
        self.started = True
        self.create()

    def present(self) -> bool:
        return self.interface is not None

    def remove(self) -> None:
        self.emulator.unplug()
        self.interface = None

    def kernel_read_size(self, block_size: int) -> int:
        """How many bytes one read() of ``block_size`` asks of the driver (mtdchar: all)."""
        return block_size

    def unplug(self, point: str, count: int, timeout: float, block_size: int) -> dict:
        """Unplug now, or at a point of the reads counted by the emulator (see scenario 'point').

        ``halfway`` aims at the middle of the read in progress (readers asking
        ``block_size`` bytes per call, 0 for the whole chip, of which the kernel serves
        ``kernel_read_size``), from the chip model's read address; the returned
        record says where the unplug really landed, so a scenario can prove it
        came mid-read.
        """
        if not point:
            self.remove()
            return {}
        chip, bus = self._chip()
        counter = "transfers" if point == "transfers" else "bytes_read"
        unit = min(self.kernel_read_size(block_size or self.size()), self.size())
        if point == "halfway":
            count = (unit // 2 - chip.read_position) % unit
            if count < unit // 8:  # too close: a transfer may be in flight already
                count += unit
        timing: dict[str, float] = {}

        def unplug_now() -> None:
            timing["started"] = t0 = time.monotonic()
            self.emulator.unplug()
            timing["unplug_s"] = round(time.monotonic() - t0, 4)

        trigger = self.kind.arm_unplug(self.emulator, bus, counter, count, unplug_now)
        if not trigger.fired.wait(timeout):
            self.emulator.responder.disarm()
            if "started" in timing:
                raise FixtureError(
                    f"fixture {self.name}: the unplug began at the point and did not return "
                    f"within {timeout:g} s"
                )
            raise FixtureError(
                f"fixture {self.name}: the readers did not get {count} {counter} further "
                f"within {timeout:g} s, so the unplug point never came"
            )
        self.interface = None
        if trigger.error:
            raise FixtureError(f"fixture {self.name}: unplug at the point failed: {trigger.error}")
        position = chip.read_position % unit
        return {
            "point": point,
            "counter": counter,
            "count": count,
            "read_size": unit,
            "position_in_read": position,
            "mid_read": 0 < position < unit,
            "emulator_counters": trigger.fired_at,
            "unplug_s": timing.get("unplug_s", 0.0),
            "began": timing.get("started", time.monotonic()),  # monotonic; the runner takes it
        }

    def _chip(self) -> tuple[Any, str]:
        """The chip model the readers read, and the emulator's name for its bus."""
        raise NotImplementedError

    def expected(self, offset: int, length: int) -> bytes:
        return self._chip()[0].expected(offset, length)

    def size(self) -> int:
        return self._chip()[0].size

    def create(self) -> None:
        if self.interface is None:
            try:
                self.emulator.plug()
                self.interface = self.emulator.wait_host(READY_TIMEOUT)
            except GadgetError as exc:
                raise FixtureError(f"fixture {self.name}: {exc}") from exc
        self._attach()

    def _level_target(self, level: str | None) -> tuple[Path, str]:
        raise NotImplementedError

    def _usb_interface_target(self) -> tuple[Path, str]:
        return (
            USB_DRIVERS / self.kind.interface_driver,
            self.interface.name if self.interface else "",
        )

    def unbind(self, level: str | None) -> None:
        driver_dir, device = self._level_target(level)
        (driver_dir / "unbind").write_text(device)

    def bind(self, level: str | None) -> None:
        driver_dir, device = self._level_target(level)
        (driver_dir / "bind").write_text(device)
        self._attach()

    def identity(self) -> str:
        return self.interface.name if self.interface else ""

    def perform(self, action: dict, step: int) -> None:
        raise FixtureError(f"fixture {self.name}: a USB adapter fixture cannot {action['do']}")

    def emulator_stats(self) -> dict:
        return self.emulator.stats()

    def teardown(self) -> None:
        if not self.started:
            return
        problems = self.emulator.stop()
        self.started = False
        self.interface = None
        if problems:
            raise FixtureError(f"fixture {self.name}: emulator problems: {problems}")


class UsbI2cEeprom(UsbAdapterFixture):
    """An at24 EEPROM (24c32..24c512) on the I2C bus of an emulated DLN-2 or CP2112."""

    def __init__(self, spec: dict, instance: str, udc: str, modules: dict[str, str]):
        self.eeprom = chipmodels.Eeprom(spec["eeprom"], pattern=spec["content"], seed=spec["seed"])
        self.address = spec["address"]
        self.adapter: str | None = None
        self.client: str | None = None
        self.force_ro_cleared = 0  # probes whose nvmem came up read-only and was made writable
        super().__init__(spec, instance, udc, modules)

    def _device(self) -> Any:
        return self.kind.i2c_device({self.address: self.eeprom})

    def _attach(self) -> None:
        adapter = _wait_for(
            lambda: self.kind.find_i2c_adapter(self.interface),
            READY_TIMEOUT,
            f"{self.spec['adapter']} I2C adapter",
        )
        client = f"{adapter.removeprefix('i2c-')}-{self.address:04x}"
        if self.spec.get("wp_label"):  # before the client exists: at24's nvmem takes it at probe
            gpio.wp_lookup(self.modules, client, self.spec["wp_label"], self.spec["wp_line"])
        if not Path(f"/sys/bus/i2c/devices/{client}").exists():
            new_i2c_device(adapter, self.spec["eeprom"], self.address)
        self.adapter, self.client = adapter, client
        eeprom = _wait_for(
            lambda: (p := Path(f"/sys/bus/i2c/devices/{client}/eeprom")).exists() and p,
            READY_TIMEOUT,
            f"at24 eeprom file of {client}",
        )
        _check_content(self.name, str(eeprom), self.eeprom)
        self._writable()
        if self.spec.get("wp_label"):
            self._check_wp()
        if self.spec.get("kernel_consumer"):
            self._attach_consumer()

    def _writable(self) -> None:
        """Undo a read-only default the scenario did not ask for, where the tree has one.

        Trees with an nvmem ``force_ro`` attribute make a device with a write-protect
        GPIO read-only at registration; the EEPROM itself is writable and the
        scenarios write it, so the fixture writes 0 there, as a user would, and
        says so in the kernel log.
        """
        nvmem = self.values()["nvmem"]
        force_ro = Path(nvmem).parent / "force_ro" if nvmem else None
        if force_ro is None or not force_ro.exists() or force_ro.read_text().strip() != "1":
            return
        force_ro.write_text("0")
        self.force_ro_cleared += 1
        fixtures.kmsg(
            f"harness: fixture {self.name}: {force_ro} was 1 (read-only by default); wrote 0"
        )

    def _check_wp(self) -> None:
        """nvmem took the write-protect line at probe (else the scenario tests nothing)."""
        label, line = self.spec["wp_label"], self.spec["wp_line"]
        holder = gpio.line_consumer(label, line)
        if holder != "wp":
            raise FixtureError(
                f"fixture {self.name}: line {line} of {label} is held by {holder or 'nobody'}, "
                "not by at24's nvmem as its wp GPIO (the lookup did not reach nvmem_register)"
            )

    def _attach_consumer(self) -> None:
        """Hand the new nvmem device to the in-kernel consumer (it drops the old reference)."""
        fixtures.insmod(self.modules, "nvmem_consumer", CONSUMER)
        nvmem = self.values()["nvmem"]
        if not nvmem:
            raise FixtureError(f"fixture {self.name}: no nvmem device for {self.client}")
        # the size as the provider's sysfs file gives it (nvmem->size): the module
        # builds on trees without nvmem_dev_size()
        (CONSUMER / "attach").write_text(f"{Path(nvmem).parent.name} {os.stat(nvmem).st_size}")
        _check_content(self.name, str(CONSUMER / "read"), self.eeprom)

    def teardown(self) -> None:
        if self.spec.get("kernel_consumer") and CONSUMER.exists():
            (CONSUMER / "detach").write_text("\n")
        super().teardown()
        if self.spec.get("wp_label") and self.client:
            gpio.wp_lookup(self.modules, self.client)

    def _chip(self) -> tuple[Any, str]:
        return self.eeprom, "i2c"

    def kernel_read_size(self, block_size: int) -> int:
        return min(block_size, SYSFS_READ_MAX)

    def erase_size(self) -> int:
        return 0

    def values(self) -> dict[str, str]:
        client = self.client or ""
        # at24 names its nvmem device client + an id that grows with every probe; an
        # earlier one that a held reference keeps registered is not the live one
        nvmem = glob.glob(f"/sys/bus/nvmem/devices/{client}*/nvmem") if client else []
        nvmem.sort(key=lambda path: (len(path), path))
        return {
            "eeprom": f"/sys/bus/i2c/devices/{client}/eeprom" if client else "",
            "nvmem": nvmem[-1] if nvmem else "",
            "client": client,
            "adapter": self.adapter or "",
            "kernel_consumer": str(CONSUMER / "read") if self.spec.get("kernel_consumer") else "",
        }

    def _level_target(self, level: str | None) -> tuple[Path, str]:
        if level in (None, "driver", "client"):
            return I2C_DRIVERS / "at24", self.client or ""
        if level == "adapter":
            return self.kind.i2c_provider(self.interface)
        if level == "usb-interface":
            return self._usb_interface_target()
        raise FixtureError(f"fixture {self.name}: no unbind level {level!r} for an I2C EEPROM")


class SpiNorFlash(UsbAdapterFixture):
    """A SPI-NOR flash (/dev/mtdN) on the SPI controller of an emulated DLN-2."""

    def __init__(self, spec: dict, instance: str, udc: str, modules: dict[str, str]):
        self.flash = chipmodels.SpiNorFlash(
            spec["flash"], pattern=spec["content"], seed=spec["seed"]
        )
        self.controller_pdev: str | None = None
        self.mtd: str | None = None
        super().__init__(spec, instance, udc, modules)

    def _device(self) -> dln2.Dln2Device:
        return dln2.Dln2Device(flash=self.flash, gpio=False)

    def _attach(self) -> None:
        fixtures.insmod(self.modules, "spi_nor_attach", ATTACH)
        pdev = _wait_for(
            lambda: _first(self.interface.glob("dln2-spi.*")),
            READY_TIMEOUT,
            "dln2-spi platform device",
        )
        self.controller_pdev = pdev.name
        if not self._find_mtd():
            ATTACH.write_text(pdev.name)
        mtd = _wait_for(self._find_mtd, READY_TIMEOUT, f"/dev/mtd for {pdev.name}")
        self.mtd = mtd
        _check_content(self.name, f"/dev/{mtd}", self.flash)

    def _find_mtd(self) -> str | None:
        """The mtdN whose device sits below this adapter's SPI controller."""
        if self.interface is None:
            return None
        for entry in sorted(Path("/sys/class/mtd").glob("mtd[0-9]*")):
            if entry.name.endswith("ro"):
                continue
            try:
                target = entry.resolve()
            except OSError:
                continue
            if str(self.interface.resolve()) in str(target) and Path(f"/dev/{entry.name}").exists():
                return entry.name
        return None

    def _chip(self) -> tuple[Any, str]:
        return self.flash, "spi"

    def erase_size(self) -> int:
        """What spi-nor chose (4 KiB sectors on W25X parts), as MEMERASE must be aligned to it."""
        return int(Path(f"/sys/class/mtd/{self.mtd}/erasesize").read_text())

    def values(self) -> dict[str, str]:
        spi_devices = sorted(Path("/sys/bus/spi/devices").glob("spi*.0"))
        mine = [
            d.name
            for d in spi_devices
            if self.interface and str(self.interface.resolve()) in str(d.resolve())
        ]
        return {
            "mtd": f"/dev/{self.mtd}" if self.mtd else "",
            "spi_device": mine[0] if mine else "",
            "controller": self.controller_pdev or "",
        }

    def _level_target(self, level: str | None) -> tuple[Path, str]:
        if level in (None, "driver", "spi-device"):
            return SPI_DRIVERS / "spi-nor", self.values()["spi_device"]
        if level == "controller":
            return PLATFORM_DRIVERS / "dln2-spi", self.controller_pdev or ""
        if level == "usb-interface":
            return self._usb_interface_target()
        raise FixtureError(f"fixture {self.name}: no unbind level {level!r} for a SPI-NOR flash")

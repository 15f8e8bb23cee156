"""What a scenario's fixtures must offer the runner, whatever provider they emulate.

The runner only removes, re-creates, unbinds and binds providers and fills
path templates; everything device-specific (configfs for gpio-sim, a USB
gadget for the adapters) stays in the fixture's own module.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Protocol


class FixtureError(Exception):
    """A fixture that did not come up or cannot do what was asked; says what is missing."""


class Fixture(Protocol):
    name: str

    def setup(self) -> None:
        """Create the provider and wait until it is ready (its device nodes answer)."""

    def present(self) -> bool:
        """Whether the provider exists right now (not removed or unplugged)."""

    def remove(self) -> None:
        """Take the provider away the way its hardware would go (live=0, unplug)."""

    def create(self) -> None:
        """Bring a removed provider back and wait until it is ready again."""

    def unbind(self, level: str | None) -> None:
        """Unbind a driver at ``level`` (fixture-specific; None = the provider's own)."""

    def bind(self, level: str | None) -> None:
        """Bind the driver at ``level`` again and wait until the fixture is ready."""

    def perform(self, action: dict, step: int) -> None:
        """Fixture-specific actions (e.g. set-pull); raise FixtureError if unsupported."""

    def identity(self) -> str:
        """The kernel-assigned name of the provider right now (see expect.max_identities)."""

    def values(self) -> dict[str, str]:
        """Template values for worker paths, e.g. {'dev': '/dev/gpiochip1'}."""

    def teardown(self) -> None:
        """Remove everything the fixture created, also after a failed setup."""


def kmsg(text: str) -> None:
    """One line into the kernel log, printed whole on the serial console.

    Events travel this way too: without udev, virtme-ng-init finds no
    virtio-serial script ports and runs the script on the console, where
    user-space writes could be split by kernel messages; printk records are not.
    Fixtures note there what they changed in the kernel's defaults.
    """
    with open("/dev/kmsg", "w") as sink:
        sink.write(f"<2>{text}\n")


def insmod(modules: dict[str, str], name: str, loaded: Path) -> None:
    """Load one of the harness's helper modules unless ``loaded`` (a file it creates) exists."""
    if loaded.exists():
        return
    module = modules.get(name)
    if not module:
        raise FixtureError(f"the {name} helper module was not built for this kernel")
    out = subprocess.run(["insmod", module], capture_output=True, text=True)
    if out.returncode != 0:
        raise FixtureError(f"insmod {module} failed: {out.stderr.strip()}")


USB_TYPES = ("usb-i2c", "spi-nor")


def make(spec: dict, instance: str, udc: str, modules: dict[str, str]) -> Fixture:
    """The fixture object for one ``fixtures:`` entry of a scenario.

    ``udc`` is the dummy_hcd UDC a USB adapter fixture plugs into; ``modules``
    are the helper kernel modules built for this kernel.
    """
    if spec["type"] == "gpio-sim":
        import gpio

        consumer = None
        if spec.get("kernel_consumer"):
            label = spec["banks"][spec["consumer_bank"]]["label"]
            consumer = gpio.KernelConsumer(modules, label, spec["consumer_line"])
        return gpio.GpioSim(spec["name"], spec["banks"], instance, consumer)
    if spec["type"] == "usb-i2c":
        import usbfixtures

        return usbfixtures.UsbI2cEeprom(spec, instance, udc, modules)
    if spec["type"] == "spi-nor":
        import usbfixtures

        return usbfixtures.SpiNorFlash(spec, instance, udc, modules)
    if spec["type"] == "revocable":
        import revocable

        return revocable.RevocableProvider(spec, modules)
    raise FixtureError(
        f"fixture {spec['name']}: type {spec['type']!r} is not supported by the guest"
    )

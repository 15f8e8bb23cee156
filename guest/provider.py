"""What every fixture offers the runner and what they all use: the protocol, the error,
kmsg and insmod. Below the fixtures, workers and adapters: it imports none of them.

The runner only removes, re-creates, unbinds and binds providers and fills
path templates; everything device-specific (configfs for gpio-sim, a USB
gadget for the adapters) stays in the fixture's own module.
"""

from __future__ import annotations

import subprocess
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from guest.protocol import ActionSpec


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

    def perform(self, action: ActionSpec, step: int) -> None:
        """Fixture-specific actions (e.g. set-pull); raise FixtureError if unsupported."""

    def identity(self) -> str:
        """The kernel-assigned name of the provider right now (see expect.max_identities)."""

    def values(self) -> dict[str, str]:
        """Template values for worker paths, e.g. {'dev': '/dev/gpiochip1'}."""

    def teardown(self) -> None:
        """Remove everything the fixture created, also after a failed setup."""


class IoLock(Protocol):
    def held(self) -> AbstractContextManager[None]:
        """The chip's data to oneself, in turn: readers that verify wait for writers."""


class ChipFixture(Fixture, Protocol):
    """A fixture with a chip model (usb-i2c, spi-nor): what the data workers check against."""

    io_lock: IoLock

    def expected(self, offset: int, length: int) -> bytes:
        """The model's bytes at ``offset``: what a read there must return."""

    def size(self) -> int:
        """The chip's size in bytes: a whole-file read must end exactly there."""

    def erase_size(self) -> int:
        """The flash's erase block (0: an EEPROM, written in place)."""


class GpioFixture(Fixture, Protocol):
    """A fixture with GPIO character devices (gpio-sim): what the GPIO workers open."""

    def dev(self, bank: int) -> str:
        """/dev/gpiochipN of one bank."""


class JudgedFixture(Fixture, Protocol):
    """A fixture whose answers only it can judge (revocable: data before the revoke only)."""

    def judge(self, got: bytes, started: float) -> bool:
        """Whether a read begun at ``started`` saw the removal; raises OSError if wrong."""


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

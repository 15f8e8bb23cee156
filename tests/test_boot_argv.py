"""The QEMU command line a harness boot uses, from a real one (virtme-ng 1.42, harness boot
of 2026-12-02): virtme-ng's script-I/O devices and watchdog go, everything the guest uses
stays."""

import shlex
from pathlib import Path

from harness.boot import UNUSED_DEVICES, without_unused_devices

REAL = Path(__file__).parent / "data" / "qemu" / "vng-1.42-harness-boot.txt"


def _devices(argv: list[str]) -> list[str]:
    return [argv[i + 1].split(",")[0] for i, w in enumerate(argv) if w == "-device"]


def _chardev_ids(argv: list[str]) -> set[str]:
    ids = set()
    for i, word in enumerate(argv):
        if word == "-chardev":
            ids |= {o[3:] for o in argv[i + 1].split(",") if o.startswith("id=")}
    return ids


def test_unused_devices_and_their_chardevs_go():
    argv = shlex.split(REAL.read_text())
    assert _devices(argv).count("virtio-serial-pci") == 6 and "i6300esb" in _devices(argv)
    kept = without_unused_devices(argv)
    assert not set(_devices(kept)) & set(UNUSED_DEVICES)
    assert _devices(kept) == ["virtio-9p-pci", "virtio-9p-pci"]
    assert _chardev_ids(kept) == {"console", "harness-sysrq"}
    assert "stdio,id=stdin,signal=on,mux=off" not in kept


def test_everything_else_is_kept_in_order():
    argv = shlex.split(REAL.read_text())
    kept = without_unused_devices(argv)
    rest = iter(argv)
    assert all(word in rest for word in kept)  # a subsequence: nothing reordered or added
    removed_devices = len(_devices(argv)) - len(_devices(kept))
    removed_chardevs = len(_chardev_ids(argv)) - len(_chardev_ids(kept))
    assert len(argv) - len(kept) == 2 * (removed_devices + removed_chardevs)
    assert kept[kept.index("-append") + 1] == argv[argv.index("-append") + 1]

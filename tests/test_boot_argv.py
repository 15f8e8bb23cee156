"""The QEMU command line a harness boot uses, from a real one (virtme-ng 1.42, harness boot
of 2026-12-02): virtme-ng's script-I/O devices and watchdog go, the machine becomes
microvm, everything the guest uses stays; vng's answer is reused across boots."""

import shlex
from pathlib import Path

import pytest

from harness.accel import Accel
from harness.boot import (
    FATAL_LINE,
    UNUSED_DEVICES,
    BootSpec,
    _until_shell_end,
    on_microvm,
    vng_dry_run,
    with_console_input,
    without_unused_devices,
)

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


def test_the_machine_becomes_microvm_with_its_shares_on_mmio():
    argv = shlex.split(REAL.read_text())
    assert argv[argv.index("-machine") + 1] == "q35"
    moved = on_microvm(without_unused_devices(argv), "kvm")
    assert [moved[i + 1] for i, w in enumerate(moved) if w == "-machine"] == [
        "microvm,acpi=on,accel=kvm"
    ]
    assert _devices(moved) == ["virtio-9p-device", "virtio-9p-device"]
    shares = [moved[i + 1] for i, w in enumerate(moved) if w == "-device"]
    assert shares[0] == "virtio-9p-device,fsdev=virtfs5,mount_tag=/dev/root"
    assert "-bios" not in moved  # microvm's own firmware is qboot


def _spec(tmp_path: Path, rwdirs: tuple[Path, ...]) -> BootSpec:
    image = tmp_path / "bzImage"
    if not image.exists():
        image.write_bytes(b"not booted: vng only names it")
    tcg = Accel("tcg", "test")
    return BootSpec(image, tcg, ("fw_devlink=off",), plan=tmp_path / "plan.json", rwdirs=rwdirs)


def test_a_cached_vng_answer_is_the_one_vng_gives_for_other_shares(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    first, second = (tmp_path / "boot-1",), (tmp_path / "run-2" / "boots" / "boot-1",)
    for share in (*first, *second):
        share.mkdir(parents=True)
    _spec(tmp_path, first)._cached_vng_argv()  # asks vng, fills the cache
    assert len(list((tmp_path / "cache" / "vng").glob("*.cmd"))) == 1
    cached = _spec(tmp_path, second)._cached_vng_argv()
    assert len(list((tmp_path / "cache" / "vng").glob("*.cmd"))) == 1  # no second entry
    fresh = shlex.split(vng_dry_run(_spec(tmp_path, second).vng_args()))
    # vng's script-I/O return file is a new temporary per call and never used by harness boots
    assert without_unused_devices(cached) == without_unused_devices(fresh)
    assert f"path={second[0]}," in " ".join(cached)
    assert f"virtme_initmount0={str(second[0]).lstrip('/')} " in " ".join(cached)
    assert "placeholder" not in " ".join(cached)


def test_a_shell_boot_reads_the_console_from_qemus_stdin():
    argv = with_console_input(without_unused_devices(shlex.split(REAL.read_text())))
    consoles = [
        argv[i + 1] for i, w in enumerate(argv) if w == "-chardev" and "id=console" in argv[i + 1]
    ]
    assert consoles == ["stdio,id=console,signal=off"]  # Ctrl-C goes to the guest, not QEMU
    assert argv[argv.index("-serial") + 1] == "chardev:console"


def test_the_shell_ends_at_its_event_even_split_across_reads():
    end = b'[ 9.1] harness-event {"event":"shell-end","id":"x","status":0}\r\n'
    passed, rest, line = _until_shell_end(b"", b"# exit\r\n" + end[:20])
    assert (passed, rest, line) == (b"# exit\r\n" + end[:20], None, end[:20])
    passed, rest, line = _until_shell_end(line, end[20:] + b"[ 9.2] harness: scenario-end x\n")
    assert passed == end[20:] and rest == b"[ 9.2] harness: scenario-end x\n" and line == b""


@pytest.mark.parametrize(
    "name",
    [
        "lkdtm-softlockup.log",
        "lkdtm-read_after_free.log",
        "lkdtm-access_null.log",
        "lkdtm-exception.log",
        "module-rcu-exp-stall.log",
    ],
)
def test_the_host_watches_for_reports_after_which_the_guest_may_not_speak(name):
    """A soft lockup or stall wedges the guest like an Oops (a mutant's rcu stall in
    _dln2_transfer held a boot for its whole 15 min timeout): each bounds the wait."""
    log = (Path(__file__).parent / "data" / "logs" / name).read_bytes()
    assert any(FATAL_LINE.search(line) for line in log.splitlines())

"""Choose the QEMU accelerator: KVM only where it really runs the kernel under test.

An openable /dev/kvm proves nothing, and neither does a real-mode boot
sector: on some nested or software hypervisors guests die at once ("KVM
internal error", failed MSR writes), on others a 16-bit probe runs fine and
the 64-bit kernel then hangs silently after SeaBIOS's "Booting from ROM...".
So the probe boots the very kernel image about to be used, under KVM, with
the serial console and no root filesystem, and requires the kernel's banner
and then its "no root" panic (proof that it got through early boot, memory
and CPU setup, driver init) within a short bound. The verdict is kept per
(kernel image, host boot, QEMU) in the cache, so the probe costs one boot
once. Boots that still print nothing under KVM are caught by the runner
(``runner.Runner``), which then falls back to TCG for the rest of the run.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import mmap
import os
import platform
import re
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness import paths

QEMU = "qemu-system-x86_64"
CHOICES = ("auto", "kvm", "tcg")
# qboot (Debian's qemu-system-data ships it) loads the kernel straight from fw_cfg and
# passes QEMU's ACPI tables on; SeaBIOS's POST and option-ROM boot cost ~2 s more per
# boot under TCG here. The probe boots with the same firmware as the real boots.
QBOOT = Path("/usr/share/qemu/qboot.rom")


def firmware_args() -> list[str]:
    """QEMU options for the firmware of virtme-ng's own boots (SeaBIOS without qboot)."""
    return ["-bios", str(QBOOT)] if QBOOT.exists() else []


# The machine of every harness boot: QEMU's microvm (virtio over MMIO, no PCI bus, a
# few lines of ACPI for the CPUs and devices, qboot as its firmware) instead of
# virtme-ng's q35. Under TCG the kernel reached init 1.1 s sooner: no PCI
# enumeration, no q35 DSDT to interpret. acpi=on: without ACPI the kernel has no
# table listing the second CPU and boots with one, and the races need two.
MACHINE = "microvm,acpi=on"


def machine_args(accel: str) -> list[str]:
    """``-machine`` for a harness boot under ``accel`` ("kvm" or "tcg"), no fallback."""
    return ["-machine", f"{MACHINE},accel={accel}"]


# rdtsc; shl rdx, 32; or rax, rdx; ret  (x86-64 System V: the 64-bit TSC in rax)
_RDTSC = bytes([0x0F, 0x31, 0x48, 0xC1, 0xE2, 0x20, 0x48, 0x09, 0xD0, 0xC3])


@functools.cache
def host_tsc_khz() -> int | None:
    """The host's TSC frequency, measured once per host boot (kept in the cache); None if unknown.

    Under TCG the guest's TSC is the host's (QEMU reads the host counter), and
    microvm has no HPET or ACPI PM timer: the kernel can calibrate the TSC only
    against the PIT, which fails when a vCPU thread is descheduled in its
    window (2 boots in 10 here), and such a boot hangs in "Calibrating delay
    loop". ``tsc_early_khz=`` hands the kernel the frequency instead.
    """
    if platform.machine() != "x86_64":
        return None
    if (boot_id := _boot_id()) is None:
        return _measure_tsc_khz()
    kept = paths.cache_dir() / "accel" / f"tsc-khz-{boot_id}"
    try:
        return int(kept.read_text())
    except (OSError, ValueError):
        pass
    khz = _measure_tsc_khz()
    if khz:
        paths.atomic_write(kept, str(khz))
    return khz


def _measure_tsc_khz() -> int | None:
    """TSC ticks per ms against CLOCK_MONOTONIC over 0.2 s (within 50 ppm here)."""
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError:  # no executable anonymous memory (a W^X policy)
        return None
    page.write(_RDTSC)
    rdtsc = ctypes.CFUNCTYPE(ctypes.c_uint64)(ctypes.addressof(ctypes.c_char.from_buffer(page)))

    def sample() -> tuple[float, int]:
        before = rdtsc()
        now = time.monotonic_ns()
        return now, (before + rdtsc()) // 2

    start_ns, start_tsc = sample()
    time.sleep(0.2)
    end_ns, end_tsc = sample()
    khz = (end_tsc - start_tsc) * 1_000_000 // (end_ns - start_ns)
    return khz if khz > 0 else None


def guest_cmdline(accel: str) -> tuple[str, ...]:
    """Kernel parameters a harness boot needs under ``accel`` on this host."""
    khz = host_tsc_khz() if accel == "tcg" else None  # KVM guests read it from kvm-clock
    return (f"tsc_early_khz={khz}",) if khz else ()


# Seconds the probe gives the kernel under KVM to reach its "no root" panic
# (the harness kernel needs 7.6 s for it under TCG here, a fraction of that under KVM).
PROBE_TIMEOUT = 20.0
# Seconds a KVM boot may stay silent before the runner calls KVM broken.
SILENCE_TIMEOUT = 30.0
BANNER = re.compile(rb"Linux version \d")
# A line the kernel prints only after init, ACPI, PCI and driver setup: it
# found no root filesystem (no root= and no initramfs in the probe).
REACHED_ROOT = re.compile(rb"VFS: (?:Cannot open root device|Unable to mount root)|Kernel panic")
# QEMU's own words when KVM fails under it.
KVM_FAILED = re.compile(
    rb"KVM internal error|kvm run failed|failed to initialize kvm|KVM: entry failed"
    rb"|failed to set MSR|kvm_buf_set_msrs|Could not access KVM kernel module"
)


@dataclass(frozen=True)
class Accel:
    name: str  # "kvm" or "tcg"
    reason: str
    requested: str = "auto"  # what the user asked for: auto may fall back, kvm/tcg may not

    @property
    def may_fall_back(self) -> bool:
        return self.name == "kvm" and self.requested == "auto"

    def fallen_back(self, why: str) -> Accel:
        return Accel("tcg", f"{why}; KVM abandoned for the rest of the run, using TCG (slow)")


def _env_seconds(name: str, default: float) -> float:
    """A bound from the environment (tests shorten it to force the fallback)."""
    text = os.environ.get(name, "")
    try:
        return float(text) if text else default
    except ValueError:
        return default


def probe_timeout() -> float:
    return _env_seconds("HARNESS_KVM_PROBE_TIMEOUT", PROBE_TIMEOUT)


def silence_timeout() -> float:
    return _env_seconds("HARNESS_KVM_SILENCE_TIMEOUT", SILENCE_TIMEOUT)


def requested_from_env(flag: str | None) -> str:
    """--accel wins, then $HARNESS_ACCEL, then auto."""
    return flag or os.environ.get("HARNESS_ACCEL") or "auto"


def _boot_id() -> str | None:
    """This host boot's id: what a measurement of the host holds for."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _host_identity() -> str:
    boot_id = _boot_id() or "unknown-boot"
    try:
        qemu = subprocess.run([QEMU, "--version"], capture_output=True, text=True, timeout=30)
        version = qemu.stdout.splitlines()[0] if qemu.stdout else ""
    except (OSError, subprocess.TimeoutExpired):
        version = ""
    return f"{os.uname().release}/{boot_id}/{version}"


def verdict_path(image: Path, timeout: float) -> Path:
    digest = hashlib.sha256()
    digest.update(image.read_bytes())
    digest.update(f"{_host_identity()}/{MACHINE}/{timeout:g}".encode())
    return paths.cache_dir() / "accel" / f"kvm-{digest.hexdigest()[:20]}.json"


def probe_command(image: Path) -> list[str]:
    return [
        QEMU,
        *machine_args("kvm"),
        "-cpu",
        "host",
        "-smp",
        "2",
        "-m",
        "1G",
        "-display",
        "none",
        "-nodefaults",
        "-no-reboot",
        "-serial",
        "stdio",
        "-kernel",
        str(image),
        "-append",
        "console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1 ignore_loglevel",
    ]


def probe_kernel(image: Path, timeout: float) -> tuple[bool, str]:
    """Boot ``image`` under KVM without a root fs; return (works, evidence).

    Works = the banner and then the no-root panic arrived within ``timeout``.
    """
    if shutil.which(QEMU) is None:
        return False, f"{QEMU} is not installed"
    started = time.monotonic()
    proc = subprocess.Popen(
        probe_command(image),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    seen = b""
    exited = False
    try:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while not REACHED_ROOT.search(seen):
            left = started + timeout - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                exited = True
                break
            seen += chunk
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    took = time.monotonic() - started
    if BANNER.search(seen) and REACHED_ROOT.search(seen):
        return True, f"the kernel under test booted under KVM to its root mount in {took:.1f} s"
    last = [ln.strip() for ln in seen.decode(errors="replace").splitlines() if ln.strip()]
    if match := KVM_FAILED.search(seen):
        line = next((ln for ln in last if match.group().decode() in ln), last[-1])
        return False, f"QEMU reported a KVM failure after {took:.1f} s: {line!r}"
    if not BANNER.search(seen):
        how = f"QEMU exited after {took:.1f} s" if exited else f"nothing within {timeout:g} s"
        after = f" (last output: {last[-1]!r})" if last else ""
        return False, f"the kernel printed nothing under KVM: {how}{after}"
    return False, (
        f"the kernel under KVM did not get through early boot within {timeout:g} s "
        f"(last line: {last[-1].strip()!r})"
    )


def choose(requested: str, image: Path) -> Accel:
    """'kvm' and 'tcg' are taken as given; 'auto' uses KVM only if ``image`` boots under it."""
    if requested not in CHOICES:
        raise ValueError(f"accelerator {requested!r}: use one of {', '.join(CHOICES)}")
    if requested != "auto":
        return Accel(requested, "forced (--accel or HARNESS_ACCEL)", requested)
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return Accel("tcg", "/dev/kvm is missing or not accessible; using TCG (slow)")
    timeout = probe_timeout()
    record = verdict_path(image, timeout)
    try:
        cached = json.loads(record.read_text())
    except (OSError, ValueError):
        cached = None
    if isinstance(cached, dict) and "works" in cached:
        works, evidence = bool(cached["works"]), f"{cached.get('evidence')} (probed earlier)"
    else:
        works, evidence = probe_kernel(image, timeout)
        paths.atomic_write(record, json.dumps({"works": works, "evidence": evidence}))
    if works:
        return Accel("kvm", f"KVM probe passed: {evidence}")
    return Accel("tcg", f"KVM probe failed: {evidence}; using TCG (slow)")

"""Choose the QEMU accelerator: KVM where it really runs guest code, else TCG.

An openable /dev/kvm is not enough: under some nested or software hypervisors
QEMU opens it and the guest then dies ("KVM internal error", failed MSR
writes). The probe boots a 512-byte boot sector that writes to QEMU's
isa-debug-exit port; only an exit with the expected code proves KVM works.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# mov al,0x31 ; out 0xf4,al ; hlt ; jmp $   -> QEMU exits with (0x31 << 1) | 1
_BOOT_CODE = bytes([0xB0, 0x31, 0xE6, 0xF4, 0xF4, 0xEB, 0xFE])
_EXPECTED_EXIT = (0x31 << 1) | 1
PROBE_TIMEOUT = 30


@dataclass(frozen=True)
class Accel:
    name: str  # "kvm" or "tcg"
    reason: str


def boot_sector() -> bytes:
    return _BOOT_CODE + bytes(510 - len(_BOOT_CODE)) + b"\x55\xaa"


def probe(accel: str, qemu: str = "qemu-system-x86_64") -> tuple[bool, str]:
    """Run the boot-sector guest under ``accel``; return (works, evidence)."""
    if shutil.which(qemu) is None:
        return False, f"{qemu} not installed"
    with tempfile.TemporaryDirectory(prefix="harness-accel-") as tmp:
        image = Path(tmp) / "probe.img"
        image.write_bytes(boot_sector())
        cmd = [
            qemu,
            "-machine",
            f"pc,accel={accel}",
            "-cpu",
            "host" if accel == "kvm" else "max",
            "-m",
            "16",
            "-display",
            "none",
            "-nodefaults",
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-drive",
            f"file={image},format=raw,if=ide",
        ]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
        except subprocess.TimeoutExpired:
            return False, f"probe guest did not finish within {PROBE_TIMEOUT} s"
    if out.returncode == _EXPECTED_EXIT:
        return True, "probe guest ran"
    detail = (out.stderr.strip().splitlines() or [f"exit code {out.returncode}"])[-1]
    return False, f"probe guest failed: {detail}"


def choose(requested: str = "auto") -> Accel:
    """'kvm' and 'tcg' are taken as given; 'auto' probes KVM and falls back to TCG."""
    if requested in ("kvm", "tcg"):
        return Accel(requested, "forced with --accel")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return Accel("tcg", "/dev/kvm is missing or not accessible; using TCG (slow)")
    works, evidence = probe("kvm")
    if works:
        return Accel("kvm", "/dev/kvm works (probe guest ran)")
    return Accel("tcg", f"/dev/kvm exists but KVM does not work ({evidence}); using TCG (slow)")

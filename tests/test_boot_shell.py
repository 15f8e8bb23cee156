"""`harness run --shell` at a terminal: the scenario runs, then a shell in the guest on the
serial console with its fixtures' paths; `exit` tears down, powers off, and leaves no QEMU.

Driven through a pseudo-terminal (pexpect), as a developer would type it; the kernel is the
default build the other boot tests share.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from guest.shell import PROMPT

pytestmark = pytest.mark.boot

ROOT = Path(__file__).resolve().parents[1]


def test_a_shell_in_the_guest_after_the_scenario_then_teardown(tmp_path):
    out = tmp_path / "results"
    child = pexpect.spawn(
        sys.executable,
        ["-m", "harness.cli", "run", "nvmem-data-integrity", "--shell", "--out", str(out)],
        cwd=ROOT,
        timeout=1800,  # a build, if the other boot tests have not made it yet
        encoding="utf-8",
        codec_errors="replace",
        dimensions=(50, 220),
    )
    child.logfile_read = sys.__stderr__
    banner = r"harness:   eeprom0 \(usb-i2c\): eeprom=\S+, nvmem=\S+, client=(\S+),"
    child.expect(banner, timeout=600)
    client = child.match.group(1)
    child.expect_exact(PROMPT, timeout=120)
    child.sendline("ls /sys/bus/nvmem/devices; echo listed-$((6*7))")
    child.expect(re.escape(client))
    child.expect_exact("listed-42")
    child.expect_exact(PROMPT)
    child.sendline("exit")
    child.expect(pexpect.EOF, timeout=300)
    child.close()
    assert child.exitstatus == 0, "the scenario passed and the shell's end is not a failure"
    summary = json.loads((out / "summary.json").read_text())
    (item,) = summary["items"]
    assert item["status"] == "pass" and item["guest"]["workers"]["read-4k"]["ops"] > 0
    left = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout
    assert not left.strip(), f"QEMU still running after the shell: {left}"

"""The host runner over a recorded boot: QEMU replaced by a guest that replays a real 6.12
boot's console (tests/data/events/6.12-mtd-two-items-kasan-reboot/: mtd-data-integrity
passed, then mtd-spi-nor-unbind-during-read hit KASAN and asked for a reboot) and leaves
the guest's own result files, as the runner in that boot wrote them. Everything past the
console (the fold, attribution, verdicts, reboots, stopping on enough) is the real code.
"""

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from harness import runner as runner_mod
from harness.accel import Accel
from harness.boot import EVENT, GuestEvent
from harness.commands.run import run_until_enough
from harness.results import expand
from harness.runner import Runner
from harness.scenario import load_scenarios, resolve

BOOT = Path(__file__).parent / "data" / "events" / "6.12-mtd-two-items-kasan-reboot"
ITEMS = ["mtd-data-integrity", "mtd-spi-nor-unbind-during-read"]


class ReplayedGuest:
    """boot.Guest's interface, for a boot that already happened."""

    boots = 0

    def __init__(self, spec, console_path: Path):
        self.spec, self.console_path = spec, console_path
        self.started = 0.0
        self.command = "qemu-system-x86_64 (replayed)"
        self.kernel_output, self.kvm_failure, self.fatal_at = False, "", 0.0
        self.ended_reason = ""
        self.control = None

    def start(self) -> None:
        type(self).boots += 1
        self.started = time.monotonic()
        shutil.copyfile(BOOT / "console.log", self.console_path)
        results = self.spec.rwdirs[0] / "guest"
        results.mkdir(parents=True, exist_ok=True)
        for item in ITEMS:
            shutil.copyfile(BOOT / f"{item}.json", results / f"{item}.json")

    def events(self, deadline):
        for line in (BOOT / "console.log").read_bytes().splitlines():
            if re.match(rb"^\[\s*\d+\.\d+\] ", line):
                self.kernel_output = True
            if found := EVENT.search(line):
                payload = json.loads(found.group(1))
                yield GuestEvent(payload.pop("event"), payload)
        self.ended_reason = "exit"

    def request_stacks(self, reason: str) -> bool:
        return False

    def stop(self) -> int:
        return 0


@pytest.fixture
def replayed(monkeypatch, tmp_path):
    monkeypatch.setattr(runner_mod, "Guest", ReplayedGuest)
    ReplayedGuest.boots = 0

    def make(*more: str):
        items = expand(load_scenarios(resolve([*ITEMS, *more])), 1, None)
        run = Runner(Path("bzImage"), Accel("tcg", "test"), tmp_path, time.monotonic() + 600)
        return run, items

    return make


def test_a_recorded_boot_gives_each_item_its_verdict_and_the_reboot_its_reason(replayed):
    run, items = replayed()
    results = {r.item.id: r for r in run_until_enough(run, items, None)}
    passed, failed = results["mtd-data-integrity"], results["mtd-spi-nor-unbind-during-read"]
    assert passed.status == "pass" and passed.guest.workers["read-64k"]["bytes_verified"]
    assert passed.boot == failed.boot == 1 and passed.console.endswith("boot-1/console.log")
    assert failed.status == "fail"
    assert failed.splats[0].title == "KASAN: slab-use-after-free Read in spi_nor_read"
    assert failed.guest.needs_reboot and failed.first_splat_s is not None
    (boot,) = run.boots
    assert boot.ended == "done" and boot.seconds_to_ready is not None
    assert boot.left_because == (
        "mtd-spi-nor-unbind-during-read left the kernel tainted or a thread stuck in boot 1"
    )


def test_enough_after_a_boot_skips_the_items_left_for_the_next(replayed):
    run, items = replayed("gpio-sim-plug-cycle")  # left for the boot after the reboot

    def enough(finished):
        return "it reproduced" if any(r.status == "fail" for r in finished) else None

    results = {r.item.id: r for r in run_until_enough(run, items, enough)}
    assert ReplayedGuest.boots == 1, "no second boot once enough was seen"
    left = results["gpio-sim-plug-cycle"]
    assert left.status == "skipped" and left.error == "not run: it reproduced"
    assert results["mtd-spi-nor-unbind-during-read"].status == "fail"

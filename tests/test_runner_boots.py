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
    late: range = range(0)  # console lines (0-based) the kernel prints only after the boot's end

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
        self.console_path.write_bytes(b"")
        results = self.spec.rwdirs[0] / "guest"
        results.mkdir(parents=True, exist_ok=True)
        for item in ITEMS:
            shutil.copyfile(BOOT / f"{item}.json", results / f"{item}.json")

    def events(self, deadline):
        """The console as the real Guest writes it: line by line, as each arrives."""
        lines = (BOOT / "console.log").read_bytes().splitlines(keepends=True)
        held = [lines[n] for n in self.late]
        with self.console_path.open("ab") as console:
            for number, line in enumerate(lines):
                if number in self.late:
                    continue
                console.write(line)
                console.flush()
                if re.match(rb"^\[\s*\d+\.\d+\] ", line):
                    self.kernel_output = True
                if found := EVENT.search(line):
                    payload = json.loads(found.group(1))
                    yield GuestEvent(payload.pop("event"), payload)
            console.writelines(held)
        self.ended_reason = "exit"

    def request_stacks(self, reason: str) -> bool:
        return False

    def stop(self) -> int:
        return 0


@pytest.fixture
def replayed(monkeypatch, tmp_path):
    monkeypatch.setattr(runner_mod, "Guest", ReplayedGuest)
    ReplayedGuest.boots, ReplayedGuest.late = 0, range(0)

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


def _said(monkeypatch) -> list[str]:
    lines: list[str] = []
    monkeypatch.setattr(runner_mod, "say", lines.append)
    return lines


def test_each_verdict_is_printed_when_its_item_ends_not_when_the_boot_does(replayed, monkeypatch):
    said = _said(monkeypatch)
    run, items = replayed()
    run_until_enough(run, items, None)
    passed = said.index("  mtd-data-integrity: PASS")
    assert passed < said.index("  mtd-spi-nor-unbind-during-read: started (5 cycle(s))")
    failed = [line for line in said if line.startswith("  mtd-spi-nor-unbind-during-read: FAIL")]
    assert failed == [
        "  mtd-spi-nor-unbind-during-read: FAIL (KASAN: slab-use-after-free Read in spi_nor_read; "
        "general protection fault in spi_mem_adjust_op_size)"
    ]
    assert said.count("  mtd-data-integrity: PASS") == 1
    assert not any("[was " in line for line in said)


def test_a_report_printed_after_the_item_ended_changes_its_printed_verdict(replayed, monkeypatch):
    """The KASAN report reaches the console only after the boot's last event (as a deferred
    free's report would): the line printed at the item's end has the guest's own violation
    only; the boot's end adds the title and says the line changed."""
    log = (BOOT / "console.log").read_text().splitlines()
    first = next(n for n, line in enumerate(log) if "BUG: KASAN:" in line)
    after = next(n for n in range(first, len(log)) if "harness-event" in log[n])
    ReplayedGuest.late = range(first, after)
    said = _said(monkeypatch)
    run, items = replayed()
    results = {r.item.id: r for r in run_until_enough(run, items, None)}
    title = "KASAN: slab-use-after-free Read in spi_nor_read"
    assert "  mtd-spi-nor-unbind-during-read: FAIL" in said
    changed = [
        line for line in said if line.startswith(f"  mtd-spi-nor-unbind-during-read: FAIL ({title}")
    ]
    assert len(changed) == 1
    assert changed[0].endswith("[was FAIL when it ended; the boot's end changed it]")
    assert results["mtd-spi-nor-unbind-during-read"].splats[0].title == title

"""The fold of a boot's guest events (harness/bootfold.py), driven with the event lines of
real 6.12 boots (tests/data/events/), each at the kernel time it was printed.

mtd-two-items-kasan-reboot: mtd-data-integrity ran and ended, then
mtd-spi-nor-unbind-during-read hit KASAN and asked for a reboot.
item-stuck-until-timeout: nvmem-readers-only (a deliberately broken fixture)
started and never ended; the host asked for the stacks at its timeout.
"""

import json
import re
from pathlib import Path

from harness.boot import EVENT
from harness.bootfold import AFTER_DONE, AFTER_END, GuestSignals, Progress, conclude

EVENTS = Path(__file__).parent / "data" / "events"
STAMP = re.compile(r"^\[\s*(\d+\.\d+)\]")


def events(name: str) -> list[tuple[float, str, dict]]:
    out = []
    for line in (EVENTS / name).read_bytes().splitlines():
        found = EVENT.search(line)
        if found:
            fields = json.loads(found.group(1))
            stamp = float(STAMP.match(line.decode()).group(1))
            out.append((stamp, fields.pop("event"), fields))
    return out


def fold(name: str, timeouts: dict[str, float]) -> tuple[Progress, list[str]]:
    progress = Progress(1, 0.0, 300.0, 3600.0, timeouts)
    said = [line for at, kind, fields in events(name) if (line := progress.take(kind, fields, at))]
    return progress, said


MTD = {"mtd-data-integrity": 900.0, "mtd-spi-nor-unbind-during-read": 900.0}


def test_two_items_that_ended_and_a_reboot_asked_for():
    progress, said = fold("6.12-mtd-two-items-kasan-reboot.log", MTD)
    assert progress.ready_at == 5.664192 and progress.kernel == "6.12.118+"
    assert progress.ended == {"mtd-data-integrity": 18.1, "mtd-spi-nor-unbind-during-read": 5.2}
    assert progress.current is None
    assert progress.ended_by == "mtd-spi-nor-unbind-during-read"
    assert progress.left_because == (
        "mtd-spi-nor-unbind-during-read left the kernel tainted or a thread stuck in boot 1"
    )
    # after the last item's end the guest gets AFTER_END, after needs-reboot AFTER_DONE
    assert progress.deadline == 29.008459 + AFTER_DONE < 28.991577 + AFTER_END
    assert said[0] == "boot 1: guest ready after 5.7 s (kernel 6.12.118+)"
    assert "  mtd-spi-nor-unbind-during-read: started (5 cycle(s))" in said
    assert any("kernel tainted B during wait-workers" in line for line in said)
    found = conclude(progress, "exit", list(MTD), set(), "", "console.log")
    assert found.done == set(MTD) and not found.errors and not found.violations


def test_an_item_that_never_ended_is_its_timeout_or_its_kernel_report():
    timeouts = {"nvmem-readers-only": 600.0}
    progress, _ = fold("6.12-item-stuck-until-timeout.log", timeouts)
    assert progress.current == "nvmem-readers-only" and not progress.ended
    assert progress.deadline == 21.846265 + 600.0, "the scenario's own timeout"
    hung = conclude(progress, "timeout", list(timeouts), set(), "tail", "c.log")
    assert hung.errors == {
        "nvmem-readers-only": "timeout: no result within 600 s (guest hung?); console tail:\ntail"
    }
    assert progress.left_because == "nvmem-readers-only ended boot 1 (timeout)"
    reported = conclude(progress, "timeout", list(timeouts), {"nvmem-readers-only"}, "", "c.log")
    assert reported.violations == {
        "nvmem-readers-only": "the guest runner stopped reporting after the kernel's report "
        "(timeout); console: c.log"
    }
    assert not reported.errors and reported.done == {"nvmem-readers-only"}


def test_a_fatal_report_inside_an_item_shortens_the_wait_to_the_grace():
    progress, _ = fold("6.12-item-stuck-until-timeout.log", {"nvmem-readers-only": 600.0})
    fatal = GuestSignals(kernel_output=True, fatal_at=30.0)
    assert progress.deadline_now(fatal, None, 90.0) == 120.0
    before = GuestSignals(kernel_output=True, fatal_at=10.0)  # before the item started
    assert progress.deadline_now(before, None, 90.0) == progress.deadline


def test_kvm_that_prints_nothing_or_fails_ends_the_wait():
    progress = Progress(1, 100.0, 220.0, 3600.0, {})
    assert progress.deadline_now(GuestSignals(), 20.0, 30.0) == 120.0
    assert progress.deadline_now(GuestSignals(kernel_output=True), 20.0, 30.0) == 220.0
    failed = GuestSignals(kernel_output=True, kvm_failure="KVM internal error")
    assert progress.deadline_now(failed, 20.0, 30.0) == 0.0
    assert progress.deadline_now(GuestSignals(), None, 30.0) == 220.0, "TCG: no silence bound"


def test_a_boot_that_never_reached_the_runner_errs_every_item():
    progress = Progress(2, 0.0, 300.0, 3600.0, {"a": 60.0, "b": 60.0})
    found = conclude(progress, "timeout", ["a", "b"], set(), "tail", "c.log")
    assert found.done == {"a", "b"}
    assert found.errors["a"].startswith("the kernel did not reach the guest runner (timeout)")


def test_a_runner_that_came_up_and_finished_nothing_does_not_loop():
    progress = Progress(1, 0.0, 300.0, 3600.0, {"a": 60.0})
    progress.take("ready", {"kernel": "6.12"}, 5.0)
    progress.take("done", {}, 6.0)
    found = conclude(progress, "exit", ["a"], set(), "tail", "c.log")
    assert found.errors["a"].startswith("guest ended (exit) before running anything")


def test_a_kernel_report_before_any_item_ran_fails_the_item_it_was_attributed_to():
    progress = Progress(2, 0.0, 300.0, 3600.0, {"a": 60.0, "b": 60.0})
    found = conclude(progress, "exit", ["a", "b"], {"a"}, "tail", "c.log")
    assert found.done == {"a", "b"} and "a" not in found.errors
    assert found.violations["a"].startswith(
        "the kernel reported a bug before the item started; the kernel did not reach the guest "
        "runner (exit); console: c.log"
    )
    assert found.errors["b"].startswith("the kernel did not reach the guest runner (exit)")
    progress.take("ready", {"kernel": "6.12"}, 5.0)
    progress.take("done", {}, 6.0)
    found = conclude(progress, "exit", ["a", "b"], {"a"}, "tail", "c.log")
    assert "guest ended (exit) before running anything" in found.violations["a"]
    assert set(found.errors) == {"b"}

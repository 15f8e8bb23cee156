"""Which item a kernel report counts against (harness/runner.py attribute), on a real
two-item console log of the 6.12 harness kernel whose second item hit a KASAN report.

The variants move the real kmsg markers, as the guest writes them, around the real
report: a report after an item's end marker (a deferred free, a work item, a late
release) and one during boot must still fail an item, never vanish into a
"kernel log outside scenarios" case that no exit status, series or bisection sees.
"""

from pathlib import Path

from harness.runner import attribute
from tests.guestreport import guest_report

LOG = Path(__file__).resolve().parent / "data" / "logs" / "harness-nvmem-in-kernel-consumer.log"
FIRST = "nvmem-unbind-adapter-during-read-fw-devlink-off"
SECOND = "nvmem-in-kernel-consumer-unbind"
IDS = [FIRST, SECOND]  # the boot's items, in the order it was to run them
UAF = "KASAN: slab-use-after-free Read in regmap_raw_read"


def _lines() -> list[str]:
    return LOG.read_text().splitlines()


def _move(lines: list[str], marker: str, before: str) -> str:
    """The log with the line ending in ``marker`` moved to just above the line ending in
    ``before``."""
    (line,) = [x for x in lines if x.endswith(marker)]
    lines = [x for x in lines if x is not line]
    at = next(n for n, x in enumerate(lines) if x.endswith(before))
    return "\n".join([*lines[:at], line, *lines[at:]])


def test_a_report_inside_an_item_is_that_items():
    owned, outside = attribute(LOG.read_text(), IDS)
    assert [s.title for s in owned[SECOND]] == [UAF] and FIRST not in owned and not outside
    assert owned[SECOND][0].outside == ""


def test_a_report_after_an_item_ended_counts_against_that_item():
    # the second item starts only after the report: it fell between the two items
    text = _move(_lines(), f"scenario-start {SECOND}", f"scenario-end {SECOND}")
    owned, outside = attribute(text, IDS)
    assert [s.title for s in owned[FIRST]] == [UAF] and not outside
    assert owned[FIRST][0].outside == f"after {FIRST} ended"


def test_a_report_during_boot_counts_against_the_boots_first_item():
    lines = _lines()
    markers = [x for x in lines if f"harness: scenario-start {FIRST}" in x or f"end {FIRST}" in x]
    # the boot's only item starts after the report, which no marker surrounds
    text = "\n".join([*(x for x in lines if "harness: scenario-" not in x), *markers])
    owned, outside = attribute(text, IDS)
    assert [s.title for s in owned[FIRST]] == [UAF] and not outside
    assert owned[FIRST][0].outside == f"during boot, before {FIRST} started"


def test_a_report_before_any_item_started_fails_the_first_the_boot_was_to_run():
    text = "\n".join(x for x in _lines() if "harness: scenario-" not in x)
    owned, outside = attribute(text, IDS)
    assert not outside and [s.title for s in owned[FIRST]] == [UAF]
    assert owned[FIRST][0].outside == f"during boot, before {FIRST} started"


def test_a_report_in_a_boot_with_no_items_is_left_for_the_run():
    text = "\n".join(x for x in _lines() if "harness: scenario-" not in x)
    owned, outside = attribute(text, [])
    assert not owned and [s.title for s in outside] == [UAF]
    assert outside[0].outside == "during boot, before any item"


def test_a_harness_timeout_dump_alone_is_no_verdict_but_a_kernel_hang_fails():
    from harness import splats
    from harness.results import Item, ItemResult, decide
    from harness.scenario import load_scenarios, resolve

    (sc,) = load_scenarios(resolve(["gpio-sim-plug-cycle"]))
    hang_log = LOG.parent / "harness-gpio-sim-removal-never-returns.log"
    text = hang_log.read_text(errors="replace")
    dump = splats.parse(text[text.index("harness-host: ") :])
    timed_out = ItemResult(Item("x", sc, 0, 1), guest=guest_report(**{}), splats=dump)
    decide(timed_out)
    assert timed_out.status == "error" and "no kernel detector fired" in timed_out.error
    hung = ItemResult(Item("x", sc, 0, 1), guest=guest_report(**{}), splats=splats.parse(text))
    decide(hung)
    assert hung.status == "fail"


def test_a_kernel_report_fails_an_item_its_fixture_could_not_come_up_in():
    """A removal hung the kernel (dln2_stop never returned) and the next item's USB fixture
    could not come up: the hung-task report is the verdict, not "no verdict"."""
    from harness import splats
    from harness.results import Item, ItemResult, decide
    from harness.scenario import load_scenarios, resolve

    (sc,) = load_scenarios(resolve(["gpio-sim-plug-cycle"]))
    text = (LOG.parent / "harness-gpio-sim-removal-never-returns.log").read_text(errors="replace")
    error = "scenario error: fixture eeprom0: harness-1-0: host did not configure the device"
    hung = ItemResult(Item("x", sc, 0, 1), error=error, splats=splats.parse(text))
    decide(hung)
    assert hung.status == "fail" and hung.error == error
    alone = ItemResult(Item("x", sc, 0, 1), error=error)
    decide(alone)
    assert alone.status == "error"

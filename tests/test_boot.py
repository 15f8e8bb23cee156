"""Real boots: build the default kernel, boot it, run scenarios, check junit.xml.

One harness run covers two gpio-sim scenarios (user-space and in-kernel consumers), one run per
emulated adapter (DLN-2 EEPROM, CP2112 EEPROM, DLN-2 SPI-NOR), and scenarios
that must fail: detector self-tests that provoke real splats with LKDTM, and
two shipped scenarios whose bugs 6.12 has (the MTD report's use-after-free,
and an in-kernel nvmem consumer outliving its provider). A harness that
missed the splat, or a fixture that never exercised the kernel, would pass
those, and these tests would fail.
"""

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import kcidb, symbols
from harness.tree import default_tree_path

pytestmark = pytest.mark.boot

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = [
    "gpio-sim-remove-under-readers",
    "gpio-sim-remove-under-kernel-consumer",
    "nvmem-dln2-unplug-during-read",
    "nvmem-usb-unplug-during-read",
    "mtd-data-integrity",
    "nvmem-data-integrity",
    "mtd-spi-nor-unbind-during-read",
    "nvmem-in-kernel-consumer-unbind",
    str(ROOT / "tests" / "scenarios" / "selftest-leak.yaml"),
    str(ROOT / "tests" / "scenarios" / "selftest-warning.yaml"),
    str(ROOT / "tests" / "scenarios" / "selftest-kasan.yaml"),
    str(ROOT / "tests" / "scenarios" / "selftest-lockdep.yaml"),
]


@pytest.fixture(scope="module")
def harness_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", *SCENARIOS, "--out", str(out)]
        + ["--kcidb", str(out / "kcidb.json")],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    for line in proc.stdout:  # stream build and boot progress into the CI log
        sys.__stderr__.write(line)
    proc.wait(timeout=3600)
    junit = ET.parse(out / "junit.xml").getroot().find("testsuite")
    cases = {c.get("name"): c for c in junit.iter("testcase")}
    summary = json.loads((out / "summary.json").read_text())
    items = {i["id"]: i for i in summary["items"]}
    return proc, junit, cases, items, out


def test_run_exit_status_reflects_selftest_failures(harness_run):
    proc, *_ = harness_run
    assert proc.returncode == 1, "self-test scenarios must fail the run"


def test_the_kcidb_document_of_a_real_run_is_valid_and_says_what_junit_says(harness_run):
    _, _, cases, items, out = harness_run
    doc = kcidb.validate(json.loads((out / "kcidb.json").read_text()))
    tests = {t["misc"]["item"]: t for t in doc["tests"]}
    assert set(tests) == set(items)
    for name, item in items.items():
        want = {"pass": "PASS", "fail": "FAIL", "skipped": "SKIP"}.get(item["status"], "ERROR")
        assert tests[name]["status"] in (want, "MISS" if want == "ERROR" else want)
    assert any(i["report_subject"].startswith("KASAN:") for i in doc["issues"])
    assert doc["builds"][0]["status"] == "PASS" and doc["builds"][0]["log_url"].startswith("file:")


def test_results_and_properties(harness_run):
    _, junit, cases, _, out = harness_run
    assert (out / "console.log").stat().st_size > 0 and (out / "build.log").exists()
    props = {p.get("name"): p.get("value") for p in junit.iter("property")}
    assert props["kernel_release"].startswith("6.12")
    assert props["accelerator"].split(":")[0] in ("kvm", "tcg")
    assert "qemu-system-x86_64" in props["qemu_command"]
    assert set(cases) >= {
        "gpio-sim-remove-under-readers",
        "gpio-sim-remove-under-kernel-consumer",
        "selftest-warning",
        "selftest-kasan",
    }


@pytest.mark.parametrize(
    "name", ["gpio-sim-remove-under-readers", "gpio-sim-remove-under-kernel-consumer"]
)
def test_gpio_scenario_passes_and_did_the_work(harness_run, name):
    _, _, cases, items, _ = harness_run
    case, item = cases[name], items[name]
    details = [(f.get("message"), (f.text or "")[:2000]) for f in case.findall("failure")]
    assert case.find("error") is None, case.find("error").text
    assert not details, details
    guest = item["guest"]
    assert guest["cycles_done"] == guest["cycles"]
    for worker, stats in guest["workers"].items():
        assert stats["min_cycle_ops"] >= 1, worker
    removals = [a for a in guest["actions"] if a["do"] == "remove"]
    assert len(removals) == guest["cycles"]
    for action in removals:
        for worker, proof in action["midread"].items():
            if guest["workers"][worker]["type"] == "gpio-edge-events":
                assert proof["ops"] >= 3, (worker, proof)  # edge events read before the removal
            else:
                assert proof["ops_in_window"] > 0, (worker, proof)


@pytest.mark.parametrize(
    "name", ["gpio-sim-remove-under-readers", "gpio-sim-remove-under-kernel-consumer"]
)
def test_consumers_of_a_removed_chip_saw_enodev(harness_run, name):
    """User-space line requests and the in-kernel holder (gpiod_get) alike."""
    _, _, _, items, _ = harness_run
    guest = items[name]["guest"]
    for worker, stats in guest["workers"].items():
        assert set(stats["end_errnos"]) == {"ENODEV"}, (worker, stats)
        assert stats["end_errnos"]["ENODEV"] == stats["threads"] * guest["cycles"], (name, stats)


def test_selftest_warning_is_a_failure_with_its_title(harness_run):
    _, _, cases, items, _ = harness_run
    messages = [f.get("message") for f in cases["selftest-warning"].findall("failure")]
    assert "WARNING in lkdtm_WARNING" in messages
    assert items["selftest-warning"]["status"] == "fail"


def test_selftest_kasan_is_a_failure_with_its_title(harness_run):
    _, _, cases, _, _ = harness_run
    messages = [f.get("message") for f in cases["selftest-kasan"].findall("failure")]
    assert any(
        m.startswith("KASAN: slab-use-after-free Read in lkdtm_READ_AFTER_FREE") for m in messages
    )


def test_the_kasan_report_names_the_source_line_of_the_bad_read(harness_run):
    """Reports carry file:line where the build has line tables: LKDTM's read of freed
    memory is decoded to the very line of lkdtm_READ_AFTER_FREE that reads it."""
    _, junit, cases, _, _ = harness_run
    props = {p.get("name"): p.get("value") for p in junit.iter("property")}
    if symbols.for_build(props["build_dir"], {}) is None:
        pytest.skip("the build has no line tables (kconfigs/debug.config sets no DEBUG_INFO yet)")
    heap = default_tree_path() / "drivers" / "misc" / "lkdtm" / "heap.c"
    source = heap.read_text().splitlines()
    start = next(n for n, line in enumerate(source) if "void lkdtm_READ_AFTER_FREE(" in line)
    read = next(n for n in range(start, len(source)) if "saw = base[offset];" in source[n]) + 1
    (failure,) = [
        f for f in cases["selftest-kasan"].findall("failure") if "KASAN" in f.get("message")
    ]
    frame = re.search(r"lkdtm_READ_AFTER_FREE\+0x\S+ \((\S+)\)", failure.text or "")
    assert frame and frame.group(1) == f"drivers/misc/lkdtm/heap.c:{read}", failure.text


def test_lockdep_is_on_for_every_repetition_of_a_deterministic_lockdep_bug(harness_run):
    """Lockdep turns itself off after its first report and taints nothing: the guest sees
    debug_locks at 0 before the next item and asks for a fresh boot, so the second
    repetition fails too instead of passing unwatched (which read as "flaky, 1 of 2")."""
    _, _, _, items, out = harness_run
    first, second = items["selftest-lockdep#0"], items["selftest-lockdep#1"]
    for item in (first, second):
        assert item["status"] == "fail", item
        assert [s["title"] for s in item["splats"]] == ["possible deadlock in selftest_take_ba"]
    assert first["boot"] != second["boot"]
    boots = json.loads((out / "summary.json").read_text())["boots"]
    reasons = [b["left_because"] for b in boots if b["ended_by"].startswith("selftest-lockdep#")]
    assert reasons and "lockdep turned itself off (debug_locks is 0" in reasons[0], boots


def test_tainted_scenario_got_its_own_boot(harness_run):
    _, _, _, items, _ = harness_run
    assert items["selftest-warning"]["boot"] != items["selftest-kasan"]["boot"]


def test_selftest_leak_is_caught_by_identity_growth(harness_run):
    _, _, cases, items, _ = harness_run
    violations = items["selftest-leak"]["violations"]
    assert items["selftest-leak"]["status"] == "fail"
    counts = [int(m.group(1)) for v in violations if (m := re.search(r"under (\d+) different", v))]
    assert counts == [5], violations  # one new number per cycle: the fifth breaks the bound of 4
    guest = items["selftest-leak"]["guest"]
    assert guest["cycles_done"] < guest["cycles"], "the item ends in the cycle the leak showed"
    assert not items["selftest-leak"]["splats"]


def _unplug_cycles_passed(item: dict, unplug: str, replug: str) -> list[dict]:
    """The EEPROM came up, two readers verified real data, 3 unplugs ended both, replug worked."""
    assert item["status"] == "pass", (item["splats"], item["violations"], item["error"])
    guest = item["guest"]
    readers = guest["workers"]["nvmem-readers"]
    assert readers["bytes"] >= 3 * 8 * 4096  # 3 cycles, >= 8 chunks before each unplug
    assert sum(readers["end_errnos"].values()) == 2 * 3
    replugs = [a for a in guest["actions"] if a["do"] == replug]
    assert len(replugs) == 3 and not any("error" in a for a in replugs)
    unplugs = [a for a in guest["actions"] if a["do"] == unplug]
    assert len(unplugs) == 3
    return unplugs


@pytest.mark.parametrize(
    "scenario",
    ["nvmem-dln2-unplug-during-read", "nvmem-usb-unplug-during-read"],
    ids=["dln2", "cp2112"],
)
def test_eeprom_adapter_unplugged_halfway_through_a_read(harness_run, scenario):
    """The emulated DLN-2 (dln2/i2c-dln2) and CP2112 (hid-cp2112) came up, readers were busy,
    and each unplug landed inside a read: a transfer in flight at every disconnect."""
    _, _, _, items, _ = harness_run
    unplugs = _unplug_cycles_passed(items[scenario], "unplug", "replug")
    for action in unplugs:
        point = action["point"]
        assert point["point"] == "halfway" and 0 < point["position_in_read"] < 4096, point
        assert point["unplug_s"] < 10
        assert action["midread"]["nvmem-readers"]["ops_in_window"] > 0


def test_spi_nor_flash_reads_and_writes_through_the_kernel(harness_run):
    """spi-nor probed the emulated flash; 4 KiB reads and erase/program/read-back agree.

    6.12's spi-dln2 passes each transfer's length to dln2_spi_rdwr() as a u16
    and sets no max_transfer_size, so an mtd_read() of 64 KiB or more is cut
    to (length mod 65536) bytes and the rest of the buffer is never filled.
    The 69905-byte reader gets 4369 = 69905 - 65536 real bytes, then wrong
    ones; the 64 KiB, 128 KiB and 1 MiB (whole-part) readers get no real byte at all, only
    what their kmalloc()ed buffer held (sometimes another reader's first 4369
    bytes, so their first mismatch is at 0 or at 4369).
    """
    _, _, _, items, _ = harness_run
    item = items["mtd-data-integrity"]
    assert item["status"] == "fail" and not item["splats"] and not item["error"], item
    workers = item["guest"]["workers"]
    assert workers["read-4k"]["ops"] >= 1 and not workers["read-4k"]["mismatches"]
    part = 256 * 1024  # the W25X20
    assert workers["read-4k"]["bytes"] >= part
    assert workers["writer"]["ops"] >= 10 and not workers["writer"]["errors"]
    for name, block in (("read-64k", 65536), ("read-cat", 131072), ("read-1m", part)):
        stats = workers[name]
        assert stats["mismatches"] and stats["bytes"] >= block, (name, stats)  # a "full" read
        assert stats["end_errnos"] == {"EBADMSG": 1}, (name, stats)  # the worker's verdict
    assert workers["read-odd"]["mismatches"] == [69905 - 65536], workers["read-odd"]


def test_eeprom_reads_at_every_size_real_tools_use(harness_run):
    """4 KiB .. 1 MiB and odd read() sizes through nvmem sysfs, every byte checked."""
    _, _, _, items, _ = harness_run
    item = items["nvmem-data-integrity"]
    assert item["status"] == "pass", (item["splats"], item["violations"], item["error"])
    workers = item["guest"]["workers"]
    for name in ("read-4k", "read-64k", "read-cat", "read-1m", "read-odd"):
        assert workers[name]["ops"] >= 2 and workers[name]["bytes"] >= 2 * 8192, name
    assert workers["writer"]["ops"] >= 20


@pytest.mark.parametrize(
    "name, function",
    [
        ("mtd-spi-nor-unbind-during-read", "spi_nor_read"),
        ("nvmem-in-kernel-consumer-unbind", "regmap_raw_read"),
    ],
)
def test_known_6_12_bug_fails_its_scenario_with_the_kasan_report(harness_run, name, function):
    """6.12 has these bugs: the scenario must fail with the report, not pass or error.

    The title's function is where the freed memory was touched: usually the
    driver function itself, sometimes a primitive it calls (in one CI run the
    spi-nor report was "Read in __mutex_lock", nor->lock being freed), so the
    driver function must be in the report's stack, not necessarily the title.
    """
    _, _, cases, items, _ = harness_run
    assert items[name]["status"] == "fail", (items[name]["violations"], items[name]["error"])
    messages = [f.get("message") or "" for f in cases[name].findall("failure")]
    assert any(m.startswith("KASAN: slab-use-after-free Read in ") for m in messages), messages
    kasan = [s for s in items[name]["splats"] if s["kind"] == "kasan"]
    assert any(function in s["frames"] for s in kasan), [(s["title"], s["frames"]) for s in kasan]

"""JUnit and summary writer: splats become failures, hangs errors, stats system-out."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from harness import report
from harness.results import BootRecord, ItemResult, expand
from harness.scenario import load_scenario
from harness.splats import Splat
from tests.guestreport import guest_report

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "gpio-sim-remove-under-readers.yaml"


def make_results():
    sc = load_scenario(SCENARIO)
    a, b, c = expand([sc], repeat=3, seed=7)
    ok = ItemResult(
        a,
        status="pass",
        guest=guest_report(
            **{
                "cycles_done": 20,
                "cycles": 20,
                "duration_s": 30.1,
                "taint_before": 0,
                "taint_after": 0,
                "slab_growth_kb": 12,
                "workers": {
                    "own-getter": {
                        "type": "gpio-get-values",
                        "threads": 1,
                        "ops": 5000,
                        "min_cycle_ops": 210,
                        "errors": {"ENODEV": 20},
                        "end_errnos": {"ENODEV": 20},
                        "longest_op_s": 0.01,
                    }
                },
                "actions": [
                    {"do": "remove", "latency_s": 0.2},
                    {"do": "remove", "latency_s": 0.4},
                    {
                        "cycle": 1,
                        "do": "unplug",
                        "fixture": "eeprom0",
                        "latency_s": 0.03,
                        "point": {
                            "point": "halfway",
                            "counter": "bytes_read",
                            "count": 2304,
                            "read_size": 4096,
                            "position_in_read": 2048,
                        },
                    },
                ],
            }
        ),
    )
    splat = Splat(
        kind="kasan",
        title="KASAN: slab-use-after-free Read in gpio_ioctl",
        first_line=10,
        time=1.0,
        excerpt="BUG: KASAN: slab-use-after-free in gpio_ioctl+0x1/0x2",
        scenario=b.id,
        count=2,
    )
    late = Splat(
        kind="warning",
        title="WARNING in gpio_sim_dev_release",
        first_line=40,
        time=3.0,
        excerpt="WARNING: CPU: 0 PID: 7 at drivers/gpio/gpio-sim.c:1 gpio_sim_dev_release",
        scenario=None,
        outside=f"after {b.id} ended",
    )
    failed = ItemResult(
        b, status="fail", splats=[splat, late], violations=["cycle 3: remove did not return"]
    )
    hung = ItemResult(c, status="error", error="timeout: no result within 900 s\nconsole tail")
    boot = BootRecord(
        1,
        "c.log",
        (),
        12.0,
        "exit",
        outside_splats=[Splat("warning", "WARNING in foo", 3, 0.5, "WARNING: ...", None)],
    )
    return [ok, failed, hung], [boot]


def test_junit_content(tmp_path):
    results, boots = make_results()
    info = report.RunInfo(
        command=["harness", "run"],
        properties={"accelerator": "tcg: probe failed"},
        repro={results[0].item.id: "harness run x --seed 7"},
    )
    report.write(tmp_path, results, boots, info)
    root = ET.parse(tmp_path / "junit.xml").getroot()
    suite = root.find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "2" and suite.get("errors") == "1"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["accelerator"] == "tcg: probe failed"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    ok = cases["gpio-sim-remove-under-readers#0"]
    assert ok.find("failure") is None and ok.find("error") is None
    out = ok.find("system-out").text
    assert "reproduce: harness run x --seed 7" in out
    assert "worker own-getter (gpio-get-values, 1 thread(s)): 5000 ops" in out
    assert "action remove: 2x, max 0.400 s" in out
    assert "cycle 1: unplug eeprom0 at halfway landed at byte 2048 of a 4096-byte read" in out
    failures = cases["gpio-sim-remove-under-readers#1"].findall("failure")
    assert failures[0].get("message") == "KASAN: slab-use-after-free Read in gpio_ioctl (x2)"
    assert "gpio_ioctl+0x1/0x2" in failures[0].text
    assert failures[1].get("message") == (
        "WARNING in gpio_sim_dev_release (outside the scenario: after "
        "gpio-sim-remove-under-readers#1 ended)"
    )
    assert failures[2].get("message").startswith("1 expectation(s) not met: cycle 3")
    error = cases["gpio-sim-remove-under-readers#2"].find("error")
    assert error.get("message") == "timeout: no result within 900 s"
    assert cases["kernel log outside scenarios"].find("failure").get("message") == "WARNING in foo"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["counts"] == {"pass": 1, "fail": 1, "error": 1, "skipped": 0}
    assert summary["items"][1]["splats"][0]["title"].startswith("KASAN")


def test_the_end_of_run_table_puts_what_needs_attention_first():
    (ok, failed, hung), _ = make_results()
    ok.duration_s, ok.boot, failed.duration_s, failed.boot = 30.1, 1, 8.25, 1
    lines = report.table([ok, failed, hung])
    assert lines[0].split() == ["item", "verdict", "time", "boot", "reports"]
    rows = [line.split("  ") for line in lines[1:]]
    assert [r[0].strip() for r in rows] == [failed.item.id, hung.item.id, ok.item.id]
    assert lines[1].endswith(
        "FAIL     8.2 s   1     KASAN: slab-use-after-free Read in gpio_ioctl; "
        "WARNING in gpio_sim_dev_release"
    )
    assert lines[2].endswith("ERROR    -       -     timeout: no result within 900 s")
    assert lines[3].endswith("PASS     30.1 s  1")
    failed.splats = []
    (_, row) = report.table([failed])
    assert row.endswith("FAIL     8.2 s  1     cycle 3: remove did not return")

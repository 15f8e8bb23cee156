"""--kcidb: results as KernelCI's KCIDB documents, validated with kcidb-io (the schema's own
package) on recorded results; the boot tier validates a real run's."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_report import make_results

from harness import kcidb, report
from harness.report import RunInfo

ROOT = Path(__file__).resolve().parents[1]


def _document(tmp_path: Path, patchset: kcidb.Patchset | None = None) -> dict:
    results, boots = make_results()
    info = RunInfo(
        command=["harness", "run"], properties={"tree": "/src/linux", "accelerator": "tcg"}
    )
    info.build = {
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "duration_s": 412.5,
        "toolchain": "gcc (Debian 12.2.0-14) 12.2.0",
        "config_hash": "abc",
    }
    report.write(tmp_path, results, boots, info)
    doc = kcidb.Document("lifetime_harness")
    kcidb.add_run(doc, json.loads((tmp_path / "summary.json").read_text()), tmp_path, patchset)
    return kcidb.validate(doc.to_json())


def test_a_run_is_one_checkout_one_build_and_a_test_per_item(tmp_path):
    doc = _document(tmp_path)
    assert doc["version"] == {"major": 5, "minor": 3}
    assert len(doc["checkouts"]) == len(doc["builds"]) == 1 and len(doc["tests"]) == 3 + 1
    statuses = [t["status"] for t in doc["tests"]]
    assert statuses == ["PASS", "FAIL", "ERROR", "FAIL"]  # the hung item: it could not finish
    assert {t["path"] for t in doc["tests"][:3]} == {"lifetime.gpio-sim-remove-under-readers"}
    failed = doc["tests"][1]
    assert failed["comment"].startswith("KASAN: slab-use-after-free Read in gpio_ioctl")


def test_each_distinct_report_is_an_issue_with_an_incident_per_item(tmp_path):
    doc = _document(tmp_path)
    subjects = sorted(i["report_subject"] for i in doc["issues"])
    assert subjects == [
        "KASAN: slab-use-after-free Read in gpio_ioctl",
        "WARNING in foo",
        "WARNING in gpio_sim_dev_release",
    ]
    assert {i["test_id"] for i in doc["incidents"]} == {
        doc["tests"][1]["id"],
        doc["tests"][3]["id"],
    }


def test_a_report_outside_every_item_is_a_failed_kernel_log_test(tmp_path):
    """Every report in a boot counts: one outside the items fails a test of its own."""
    outside = _document(tmp_path)["tests"][3]
    assert outside["path"] == "lifetime.kernel_log" and outside["comment"] == "WARNING in foo"
    assert outside["misc"] == {"boot": 1, "outside_scenarios": True}


def test_a_series_checkout_carries_its_patchset_and_thread(tmp_path):
    patches = sorted((ROOT / "tests" / "data" / "series" / "nvmem-survive-unbind").glob("*.patch"))
    patchset = kcidb.Patchset(
        tuple(patches), "cover-v2.2@lifetime-harness.test", "[PATCH v2 0/2] x", 2
    )
    (checkout,) = _document(tmp_path, patchset)["checkouts"]
    assert len(checkout["patchset_hash"]) == 64 and checkout["message_id"].endswith(".test")
    assert [f["name"] for f in checkout["patchset_files"]] == [p.name for p in patches]


def test_items_not_run_are_missed_not_errors(tmp_path):
    results, boots = make_results()
    results[2].error = "not run: the whole-run timeout expired"
    report.write(tmp_path, results, boots, RunInfo(command=["harness"]))
    doc = kcidb.Document("ci")
    kcidb.add_run(doc, json.loads((tmp_path / "summary.json").read_text()), tmp_path)
    assert kcidb.validate(doc.to_json())["tests"][2]["status"] == "MISS"


def test_a_bad_origin_is_bad_input_before_anything_runs(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            "--kcidb",
            str(tmp_path / "k.json"),
            "--kcidb-origin",
            "My-CI",
            "--out",
            str(tmp_path / "r"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "lower-case letters, digits and '_' only" in done.stderr
    assert not (tmp_path / "r").exists()


def test_what_the_schema_refuses_is_said_with_its_place():
    with pytest.raises(kcidb.KcidbError, match="tests/0/status"):
        kcidb.validate(
            {
                "version": {"major": 5, "minor": 3},
                "tests": [{"id": "o:t", "build_id": "o:b", "origin": "o", "status": "ok"}],
            }
        )

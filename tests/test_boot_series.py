"""Real boots: `harness series` on the default 6.12 tree with the two series in tests/data/series.

1. spi-dln2-transfer-length: the fix for the u16 transfer length the harness
   found (reads of 64 KiB or more return unfilled buffers). mtd-data-integrity
   must be called fixed, after head ran as often as base's failure rate asks
   (1 of 1 failed: 7 clean head runs for p <= 1 %); mtd-spi-nor-unbind-during-
   read, whose use-after-free the fix does not touch, still failing with the
   same bugs (an unchanged pass is test_boot_revocable's).
2. gpio-sim-value-map-freed-early: an injected devres-ordering bug (the value
   bitmap freed before gpiochip_remove() numbs the chip). gpio-sim-remove-
   under-readers must be called regressed, with the KASAN title, after base
   ran without it as often as its rate on head asks.
3. nvmem-survive-unbind as a mailing-list thread (two versions, a review that
   quotes a hunk, trailers): b4 takes v2, whose head has the same source tree
   as the plain patches, so nvmem-in-kernel-consumer-unbind is called fixed
   as with them (the README's worked example), the trailers in the commits.

Both run on the default tree's own checkout, which shares the build directory
of the other boot tests: each side's build compiles the series' files and links.
"""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import kcidb

pytestmark = pytest.mark.boot

ROOT = Path(__file__).resolve().parents[1]
SERIES = ROOT / "tests" / "data" / "series"


def series(out: Path, *args: str) -> tuple[int, dict, dict]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "series", "--base", "HEAD", "--out", str(out), *args],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    for line in proc.stdout:
        sys.__stderr__.write(line)
    proc.wait(timeout=3600)
    summary = json.loads((out / "summary.json").read_text())
    verdicts = {s["scenario"]: s for s in summary["scenarios"]}
    return proc.returncode, summary, verdicts


def test_a_real_fix_is_called_fixed_and_the_rest_unchanged(tmp_path):
    code, summary, verdicts = series(
        tmp_path,
        "mtd-data-integrity",
        "mtd-spi-nor-unbind-during-read",
        "--series",
        str(SERIES / "spi-dln2-transfer-length"),
        "--repeat",
        "1",
        "--kcidb",
        str(tmp_path / "kcidb.json"),
    )
    assert code == 0, "a fix regresses nothing"
    doc = kcidb.validate(json.loads((tmp_path / "kcidb.json").read_text()))
    base, head = doc["checkouts"]
    assert "patchset_hash" not in base and len(head["patchset_hash"]) == 64
    assert len(doc["builds"]) == 2 and len(doc["tests"]) == 2 + 2 + 6  # head's added runs too
    assert summary["touched"] == ["drivers/spi/spi-dln2.c"]
    fixed = verdicts["mtd-data-integrity"]
    assert fixed["verdict"] == "fixed", fixed["line"]
    assert fixed["base"]["runs"][0]["titles"], "base must fail with a named expectation"
    assert fixed["head"]["n"] == 7 and fixed["evidence"]["p"] <= 0.01
    (more,) = summary["sides"]["head"]["more_runs"]
    assert more["scenario"] == "mtd-data-integrity" and more["runs"] == 6
    assert verdicts["mtd-spi-nor-unbind-during-read"]["verdict"] == "still failing"
    head_build = summary["sides"]["head"]
    assert 0 < head_build["objects_compiled"] < 20, "the head build is incremental"
    report = (tmp_path / "report.md").read_text()
    assert (
        "mtd-data-integrity: fixed (p = 0.0078): failed 1/1 on base, passed 7/7 on head" in report
    )
    for side in ("base", "head"):
        assert (tmp_path / side / "junit.xml").exists()
        assert (tmp_path / side / "console.log").stat().st_size > 0
    junit = ET.parse(tmp_path / "junit.xml").getroot()
    assert not list(junit.iter("failure"))
    props = {p.get("name"): p.get("value") for p in junit.iter("property")}
    assert props["head_subject"] == "spi: dln2: do not truncate transfer lengths to 16 bits"


def test_an_injected_lifetime_bug_is_called_regressed_with_its_kasan_title(tmp_path):
    code, summary, verdicts = series(
        tmp_path,
        "gpio-sim-remove-under-readers",
        "nvmem-unbind-at24-during-read",
        "--series",
        str(SERIES / "gpio-sim-value-map-freed-early"),
        "--affected",
    )
    assert code == 1, "a regression fails the CI gate"
    assert summary["left_out"] == {
        "nvmem-unbind-at24-during-read": "covers none of the 1 touched file(s)"
    }
    regressed = verdicts["gpio-sim-remove-under-readers"]
    assert regressed["verdict"] == "regressed", regressed["line"]
    assert regressed["new_titles"] == ["KASAN: slab-use-after-free Read in __bitmap_replace"]
    assert regressed["head"]["failed"] >= 1 and regressed["head"]["n"] == 3
    # confirmed: base ran without it as often as its rate on head asks (4 runs for 3 of 3)
    assert regressed["base"]["failed"] == 0 and regressed["base"]["n"] >= 4
    assert regressed["evidence"]["p"] <= 0.01
    (more,) = summary["sides"]["base"]["more_runs"]
    assert more["scenario"] == "gpio-sim-remove-under-readers"
    assert "regressed (p = " in (tmp_path / "report.md").read_text()
    junit = ET.parse(tmp_path / "junit.xml").getroot()
    (failure,) = junit.iter("failure")
    assert (
        failure.get("message") == "regressed: KASAN: slab-use-after-free Read in __bitmap_replace"
    )
    assert "gpio_sim_get_multiple" in failure.text


def _tree_of(repo: str, base: str, patches: list[Path], index: Path) -> str:
    """The source tree the plain patches give on base, in a scratch index (no checkout)."""
    env = {**os.environ, "GIT_INDEX_FILE": str(index)}
    git = ["git", "-C", repo]
    subprocess.run([*git, "read-tree", base], env=env, check=True)
    subprocess.run([*git, "apply", "--cached", *map(str, patches)], env=env, check=True)
    return subprocess.run(
        [*git, "write-tree"], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_a_thread_gives_the_verdict_of_its_plain_patches(tmp_path):
    code, summary, verdicts = series(
        tmp_path,
        "nvmem-in-kernel-consumer-unbind",
        "--series",
        str(SERIES / "nvmem-survive-unbind.thread.mbox"),
        "--repeat",
        "1",
    )
    assert code == 0, "a fix regresses nothing"
    fixed = verdicts["nvmem-in-kernel-consumer-unbind"]
    assert fixed["verdict"] == "fixed", fixed["line"]
    props = {
        p.get("name"): p.get("value") for p in ET.parse(tmp_path / "junit.xml").iter("property")
    }
    assert props["series_version"] == "2"
    assert props["series_message_id"] == "cover-v2.2@lifetime-harness.test"
    assert props["series_subject"] == "[PATCH v2 0/2] nvmem: survive unbind with active consumers"
    repo, base, head = props["repository"], props["base_commit"], props["head_commit"]
    log = subprocess.run(
        ["git", "-C", repo, "log", "--format=%B", f"{base}..{head}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Reviewed-by: Rita Reviewer <rita@example.org>" in log
    assert log.count("Tested-by: Tess Tester <tess@example.org>") == 2
    plain = sorted((SERIES / "nvmem-survive-unbind").glob("*.patch"))
    head_tree = subprocess.run(
        ["git", "-C", repo, "rev-parse", f"{head}^{{tree}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert head_tree == _tree_of(repo, base, plain, tmp_path / "index")

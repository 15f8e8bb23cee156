"""Real boots: the revocable scenarios, and hangs reported with the stacks of what is stuck.

1. On the default 6.12 tree (no <linux/revocable.h>) both revocable
   scenarios are skipped, with the reason, without a build.
2. `harness series` from a commit with tests/data/series/revocable-api (the
   API as merged) to tests/data/series/revocable-per-access-index (the SRCU
   index moved into each access): the shared-fd scenario fails on base with
   the revoke hung and the blocked stacks, and is called fixed; the own-fd
   companion passes on both sides.
3. A kernel whose provider removal never returns (a local patch made here,
   not shipped): the scenario fails titled where the removal sleeps, with
   the stacks from the guest runner and, once the guest stops reporting,
   from the host through the sysrq serial port.

All run on the default tree's own checkout, so they share its build directory.
"""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import vcs
from harness.status import Exit
from harness.tree import default_tree
from tests.harnesscli import harness

pytestmark = pytest.mark.boot

ROOT = Path(__file__).resolve().parents[1]
SERIES = ROOT / "tests" / "data" / "series"
SHARED, OWN = "revocable-shared-fd-revoke", "revocable-own-fd-revoke"
HUNG = "INFO: task hung in revocable_provider_revoke"
NEVER_RETURNS = ROOT / "tests" / "scenarios" / "gpio-sim-removal-never-returns.yaml"


def commit_on_import(repo: Path, where: Path, ref: str, change) -> str:
    """One commit on the imported 6.12 in a scratch worktree, kept under ``ref``."""
    vcs.git(repo, "worktree", "add", "-q", "--detach", str(where), vcs.IMPORT_REF)
    try:
        change(where)
        return vcs.git(where, "rev-parse", "HEAD")
    finally:
        vcs.git(repo, "update-ref", ref, vcs.git(where, "rev-parse", "HEAD"))
        vcs.git(repo, "worktree", "remove", "--force", str(where))


def test_revocable_scenarios_are_skipped_without_the_api(tmp_path):
    code, output = harness("run", SHARED, OWN, "--out", str(tmp_path))
    assert code == Exit.NOTHING_RAN, "not applicable is not a failure, nor a pass"
    assert "nothing was tested" in output
    junit = ET.parse(tmp_path / "junit.xml").getroot()
    cases = {c.get("name"): c for c in junit.iter("testcase")}
    for name in (SHARED, OWN):
        (skipped,) = cases[name].iter("skipped")
        assert "no include/linux/revocable.h" in skipped.get("message")
    assert not (tmp_path / "build.log").exists(), "nothing to run: nothing built"


def test_the_shared_handle_hangs_the_revoke_and_the_per_access_index_fixes_it(tmp_path):
    repo = default_tree(restore=False).path

    def apply_api(tree: Path) -> None:
        (patch,) = vcs.series_files(SERIES / "revocable-api")
        vcs.git(tree, "am", "-q", "--3way", str(patch), identity=True)

    base = commit_on_import(repo, tmp_path / "linux", "refs/harness/test-revocable", apply_api)
    out = tmp_path / "series"
    code, _ = harness(
        "series",
        SHARED,
        OWN,
        "--base",
        base,
        "--series",
        str(SERIES / "revocable-per-access-index"),
        "--repeat",
        "1",
        "--out",
        str(out),
    )
    summary = json.loads((out / "summary.json").read_text())
    verdicts = {s["scenario"]: s for s in summary["scenarios"]}
    assert code == 0, [v["line"] for v in verdicts.values()]
    shared = verdicts[SHARED]
    assert shared["verdict"] == "fixed", shared["line"]
    assert HUNG in shared["base"]["runs"][0]["titles"]
    assert verdicts[OWN]["verdict"] == "unchanged pass", verdicts[OWN]["line"]
    base_results = json.loads((out / "base" / "summary.json").read_text())
    (run,) = [r for r in base_results["items"] if r["scenario"] == SHARED]
    hang = next(s for s in run["splats"] if s["title"] == HUNG)
    assert "revocable_provider_revoke" in hang["excerpt"] and "Call Trace" in hang["excerpt"]
    assert any("did not return within 5 s" in v for v in run["violations"])
    head_results = json.loads((out / "head" / "summary.json").read_text())
    for r in head_results["items"]:
        workers = r["guest"]["workers"]
        assert all(w["revoked_reads"] > 0 for w in workers.values()), "reads after each revoke"


def never_returns(tree: Path) -> None:
    sim = tree / "drivers" / "gpio" / "gpio-sim.c"
    text = sim.read_text()
    old = "\tswnode = dev_fwnode(&dev->pdev->dev);\n\tplatform_device_unregister(dev->pdev);"
    assert old in text
    sim.write_text(
        text.replace(
            old,
            "\tswnode = dev_fwnode(&dev->pdev->dev);\n"
            "\twait_for_completion(&gpio_sim_never);\n"
            "\tplatform_device_unregister(dev->pdev);",
        ).replace(
            "static void gpio_sim_device_deactivate(struct gpio_sim_device *dev)\n{",
            "static DECLARE_COMPLETION(gpio_sim_never);\n\n"
            "static void gpio_sim_device_deactivate(struct gpio_sim_device *dev)\n{",
        )
    )
    vcs.git(
        tree,
        "commit",
        "-q",
        "-a",
        "-m",
        "gpio: sim: removal waits for a completion nobody completes (harness test only)",
        identity=True,
    )


def test_a_removal_that_never_returns_fails_with_the_stacks_of_what_is_stuck(tmp_path):
    repo = default_tree(restore=False).path
    broken = commit_on_import(repo, tmp_path / "linux", "refs/harness/test-hang", never_returns)
    vcs.git(repo, "checkout", "-q", "--detach", broken)
    try:
        code, _ = harness("run", str(NEVER_RETURNS), "--tree", str(repo), "--out", str(tmp_path))
    finally:
        vcs.restore_import(repo)
    results = json.loads((tmp_path / "summary.json").read_text())["items"]
    (result,) = results
    assert code == 1 and result["status"] == "fail", result.get("error")
    titles = [s["title"] for s in result["splats"]]
    assert titles[0] == "INFO: task hung in gpio_sim_device_deactivate", titles
    console = (tmp_path / "console.log").read_text(errors="replace")
    host = console.index("harness-host: ")
    assert "sysrq: Show Blocked State" in console[host:], "the host's sysrq got an answer"
    assert "gpio_sim_device_deactivate" in console[host:]

"""Real boots: `harness bisect` over a made-up history on the default 6.12 tree.

The history of tests/history.py (a WARN at commit 2, a build break at 4,
the injected gpio-sim lifetime bug at 6, docs around them). The bisection
must name commit 6, skip the build break, and list the WARN as another crash
(never as the target), in about log2(8) steps with incremental builds.
"""

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.tree import default_tree
from tests.history import BUILD_BREAK, CULPRIT, SCENARIO, TARGET, make_history

pytestmark = pytest.mark.boot

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> list[str]:
    repo = default_tree(restore=False).path
    return make_history(repo, tmp_path_factory.mktemp("history") / "linux")


def test_bisect_names_the_lifetime_bug_commit_past_a_build_break_and_a_warn(history, tmp_path):
    out = tmp_path / "bisect"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "bisect", SCENARIO]
        + ["--good", history[0], "--bad", history[-1], "--out", str(out), "--title", TARGET],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )
    for line in proc.stdout:
        sys.__stderr__.write(line)
    proc.wait(timeout=3600)
    took = time.monotonic() - started
    summary = json.loads((out / "summary.json").read_text())
    sys.__stderr__.write(
        f"bisection: {took:.0f} s; steps: "
        + ", ".join(f"{t['role']} build {t['build_s']} s" for t in summary["tested"])
        + "\n"
    )
    assert proc.returncode == 0, summary["result"]
    assert summary["culprit"]["commit"] == history[CULPRIT]
    assert summary["culprit"]["title"] == TARGET
    tested = {t["commit"]: t for t in summary["tested"]}
    steps = [t for t in summary["tested"] if t["role"].startswith("step")]
    assert len(steps) <= 5, "about log2(8) steps"
    for t in summary["tested"]:
        if t["commit"] == history[BUILD_BREAK]:
            assert t["verdict"] == "skip" and t["why"].startswith("not built")
        if t["commit"] in history[2:6] and t["commit"] != history[BUILD_BREAK]:
            assert t["verdict"] == "good", t
    assert "WARNING in gpio_sim_request" in summary["other_crashes"]
    warned = [t for c, t in tested.items() if c in history[2:6] and c != history[BUILD_BREAK]]
    assert any("other crash: WARNING in gpio_sim_request" in t["why"] for t in warned)
    builds = [t["build_s"] for t in steps if t["build_s"] is not None]
    assert builds and max(builds) < 300, "incremental builds"
    log = (out / "bisect.log").read_text()
    assert "git bisect start" in log and f"# first bad commit: [{history[CULPRIT]}]" in log
    junit = ET.parse(out / "junit.xml").getroot()
    assert len(list(junit.iter("testcase"))) == 1 and not list(junit.iter("failure"))

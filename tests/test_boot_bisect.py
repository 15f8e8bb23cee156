"""Real boots: `harness bisect` over a made-up history on the default 6.12 tree.

The history of tests/history.py (an injected WARN at commit 2, a build break
at 4, the injected gpio-sim lifetime bug at 6, docs around them): its last
commit shows both bugs in every run. Without --title the bisection must
bisect both, the use-after-free first, and name commit 6 for it and commit
2 for the WARN, skip the build break, and decide the WARN's bisection on the
runs the first one made wherever it can (no second build or boot of a
commit), in about log2(8) steps each with incremental builds.
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
from tests.history import (
    BUILD_BREAK,
    CULPRIT,
    SCENARIO,
    TARGET,
    WARN,
    WARN_CULPRIT,
    make_history,
)

pytestmark = pytest.mark.boot

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> list[str]:
    repo = default_tree(restore=False).path
    return make_history(repo, tmp_path_factory.mktemp("history") / "linux")


def test_bisect_names_each_bug_of_the_bad_commit_past_a_build_break(history, tmp_path):
    out = tmp_path / "bisect"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "bisect", SCENARIO]
        + ["--good", history[0], "--bad", history[-1], "--out", str(out)],
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
        f"bisection: {took:.0f} s; commits built: "
        + ", ".join(f"{t['role']} build {t['build_s']} s" for t in summary["tested"])
        + "\n"
    )
    assert proc.returncode == 0, summary["result"]
    uaf, warn = summary["bugs"]
    assert (uaf["title"], warn["title"]) == (TARGET, WARN), "most severe first"
    assert uaf["culprit"]["commit"] == history[CULPRIT]
    assert warn["culprit"]["commit"] == history[WARN_CULPRIT]
    assert summary["culprit"] == uaf["culprit"]
    assert summary["other_crashes"] == [], "both bugs are bisected, none merely listed"
    for bug in (uaf, warn):
        steps = [c for c in bug["commits"] if c["role"].startswith("step")]
        assert len(steps) <= 5, "about log2(8) steps"
        for c in bug["commits"]:
            if c["commit"] == history[BUILD_BREAK]:
                assert c["verdict"] == "skip" and c["why"].startswith("not built")
    # between the WARN and the use-after-free: good for the one, bad for the other
    for c in uaf["commits"]:
        if c["commit"] in history[WARN_CULPRIT:CULPRIT] and c["commit"] != history[BUILD_BREAK]:
            assert c["verdict"] == "good" and f"other crash: {WARN}" in c["why"], c
    for c in warn["commits"]:
        if c["commit"] in history[WARN_CULPRIT:CULPRIT] and c["commit"] != history[BUILD_BREAK]:
            assert c["verdict"] == "bad", c
    built = [t["commit"] for t in summary["tested"]]
    assert len(built) == len(set(built)), "no commit built or booted twice"
    assert any(c["reused"] for c in warn["commits"]), "the WARN's bisection reuses runs"
    steps = [t for t in summary["tested"] if t["role"].startswith("step")]
    builds = [t["build_s"] for t in steps if t["build_s"] is not None]
    assert builds and max(builds) < 300, "incremental builds"
    log = (out / "bisect.log").read_text()
    assert "git bisect start" in log and f"# first bad commit: [{history[CULPRIT]}]" in log
    assert f"# first bad commit: [{history[WARN_CULPRIT]}]" in log
    junit = ET.parse(out / "junit.xml").getroot()
    assert len(list(junit.iter("testcase"))) == 2 and not list(junit.iter("failure"))
    text = (out / "bisect.md").read_text()
    assert text.index(f"bug 1: {TARGET}") < text.index(f"bug 2: {WARN}")

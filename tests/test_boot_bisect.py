"""Real boots: `harness bisect` over a made-up history on the default 6.12 tree.

Eight commits on the imported commit: docs and harmless driver edits, an
unrelated WARN on a path gpio-sim-remove-under-readers hits (commit 2), a
build break (commit 4, repaired by commit 5) and the injected lifetime bug of
tests/data/series/gpio-sim-value-map-freed-early (commit 6). The bisection
must name commit 6, skip the build break, and list the WARN as another crash
(never as the target), in about log2(8) steps with incremental builds.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import paths, vcs
from harness.tree import default_tree

pytestmark = pytest.mark.boot

ROOT = Path(__file__).resolve().parents[1]
SIM = "drivers/gpio/gpio-sim.c"
DOC = "Documentation/admin-guide/gpio/gpio-sim.rst"
# the bad commit's first splat is the unrelated WARN (at the first line request): name the bug
TARGET = "KASAN: slab-use-after-free Read in __bitmap_replace"
INJECTED = ROOT / "tests" / "data" / "series" / "gpio-sim-value-map-freed-early"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def commit(tree: Path, subject: str) -> str:
    vcs.git(tree, "commit", "-q", "-a", "-m", subject, identity=True)
    return vcs.git(tree, "rev-parse", "HEAD")


def make_history(repo: Path, where: Path) -> list[str]:
    """Commits 1..8 on the import, in a scratch worktree; kept under refs/harness/test-bisect."""
    vcs.git(repo, "worktree", "add", "-q", "--detach", str(where), vcs.IMPORT_REF)
    sim, doc = where / SIM, where / DOC
    history = [vcs.resolve(repo, vcs.IMPORT_REF)]
    edit(doc, "gpio-sim", "gpio-sim (the GPIO simulator)")
    history.append(commit(where, "docs: gpio-sim: name the simulator"))
    edit(
        sim,
        "\tstruct gpio_sim_chip *chip = gpiochip_get_data(gc);\n\n\tscoped_guard(mutex, "
        "&chip->lock)\n\t\t__set_bit(offset, chip->request_map);",
        "\tstruct gpio_sim_chip *chip = gpiochip_get_data(gc);\n\n"
        '\tWARN_ONCE(offset == 0, "gpio-sim: line 0 requested\\n");\n'
        "\tscoped_guard(mutex, &chip->lock)\n\t\t__set_bit(offset, chip->request_map);",
    )
    history.append(commit(where, "gpio: sim: warn when line 0 is requested (unrelated WARN)"))
    edit(doc, "GPIO simulator", "GPIO simulator, a testing module")
    history.append(commit(where, "docs: gpio-sim: say what it is for"))
    edit(sim, "static DEFINE_IDA(gpio_sim_ida);", "static DEFINE_IDA(gpio_sim_ida)")
    history.append(commit(where, "gpio: sim: drop a semicolon (breaks the build)"))
    edit(sim, "static DEFINE_IDA(gpio_sim_ida)", "static DEFINE_IDA(gpio_sim_ida);")
    history.append(commit(where, "gpio: sim: put the semicolon back"))
    (patch,) = vcs.series_files(INJECTED)
    vcs.git(where, "am", "-q", "--3way", str(patch), identity=True)
    history.append(vcs.git(where, "rev-parse", "HEAD"))
    edit(doc, "a testing module", "a module for testing")
    history.append(commit(where, "docs: gpio-sim: wording"))
    edit(sim, "/* Default to input mode. */", "/* Every line starts as an input. */")
    history.append(commit(where, "gpio: sim: reword a comment"))
    vcs.git(repo, "update-ref", "refs/harness/test-bisect", history[-1])
    vcs.git(repo, "worktree", "remove", "--force", str(where))
    return history


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> list[str]:
    repo = default_tree(restore=False).path
    return make_history(repo, tmp_path_factory.mktemp("history") / "linux")


def test_bisect_names_the_lifetime_bug_commit_past_a_build_break_and_a_warn(history, tmp_path):
    out = tmp_path / "bisect"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "bisect", "gpio-sim-remove-under-readers"]
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
    assert summary["culprit"]["commit"] == history[6]
    assert summary["culprit"]["title"] == TARGET
    tested = {t["commit"]: t for t in summary["tested"]}
    steps = [t for t in summary["tested"] if t["role"].startswith("step")]
    assert len(steps) <= 5, "about log2(8) steps"
    for t in summary["tested"]:
        if t["commit"] == history[4]:
            assert t["verdict"] == "skip" and t["why"].startswith("not built")
        if t["commit"] in history[2:6] and t["commit"] != history[4]:
            assert t["verdict"] == "good", t
    assert "WARNING in gpio_sim_request" in summary["other_crashes"]
    warned = [t for c, t in tested.items() if c in history[2:6] and c != history[4]]
    assert any("other crash: WARNING in gpio_sim_request" in t["why"] for t in warned)
    builds = [t["build_s"] for t in steps if t["build_s"] is not None]
    assert builds and max(builds) < 300, "incremental builds"
    log = (out / "bisect.log").read_text()
    assert "git bisect start" in log and f"# first bad commit: [{history[6]}]" in log
    assert (out / "junit.xml").exists() and "failure" not in (out / "junit.xml").read_text()
    assert paths.cache_dir().exists()

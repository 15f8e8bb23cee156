"""A made-up history on the default tree for bisection: the boot test and the benchmark share it.

Eight commits on the imported commit: docs and harmless driver edits, two
injected bugs, each a patch in tests/data/series that says what it breaks
(an unrelated WARN on a path gpio-sim-remove-under-readers hits, commit 2:
gpio-sim-warn-on-line-0; the lifetime bug, commit 6:
gpio-sim-value-map-freed-early) and a build break (commit 4, repaired by
commit 5). The last commit shows both bugs in every run of the scenario.
"""

from pathlib import Path

from harness import vcs

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = "gpio-sim-remove-under-readers"
# the bad commit's first splat is the unrelated WARN (at the first line request)
TARGET = "KASAN: slab-use-after-free Read in __bitmap_replace"
CULPRIT = 6  # index in make_history()'s list
WARN = "WARNING in gpio_sim_request"
WARN_CULPRIT = 2
BUILD_BREAK = 4
SIM = "drivers/gpio/gpio-sim.c"
DOC = "Documentation/admin-guide/gpio/gpio-sim.rst"
SERIES = ROOT / "tests" / "data" / "series"
INJECTED = SERIES / "gpio-sim-value-map-freed-early"
INJECTED_WARN = SERIES / "gpio-sim-warn-on-line-0"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def commit(tree: Path, subject: str) -> str:
    vcs.git(tree, "commit", "-q", "-a", "-m", subject, identity=True)
    return vcs.git(tree, "rev-parse", "HEAD")


def apply(tree: Path, series: Path) -> str:
    (patch,) = vcs.series_files(series)
    vcs.git(tree, "am", "-q", "--3way", str(patch), identity=True)
    return vcs.git(tree, "rev-parse", "HEAD")


def make_history(repo: Path, where: Path) -> list[str]:
    """Commits 1..8 on the import, in a scratch worktree; kept under refs/harness/test-bisect."""
    vcs.git(repo, "worktree", "add", "-q", "--detach", str(where), vcs.IMPORT_REF)
    sim, doc = where / SIM, where / DOC
    history = [vcs.resolve(repo, vcs.IMPORT_REF)]
    edit(doc, "gpio-sim", "gpio-sim (the GPIO simulator)")
    history.append(commit(where, "docs: gpio-sim: name the simulator"))
    history.append(apply(where, INJECTED_WARN))
    edit(doc, "GPIO simulator", "GPIO simulator, a testing module")
    history.append(commit(where, "docs: gpio-sim: say what it is for"))
    edit(sim, "static DEFINE_IDA(gpio_sim_ida);", "static DEFINE_IDA(gpio_sim_ida)")
    history.append(commit(where, "gpio: sim: drop a semicolon (breaks the build)"))
    edit(sim, "static DEFINE_IDA(gpio_sim_ida)", "static DEFINE_IDA(gpio_sim_ida);")
    history.append(commit(where, "gpio: sim: put the semicolon back"))
    history.append(apply(where, INJECTED))
    edit(doc, "a testing module", "a module for testing")
    history.append(commit(where, "docs: gpio-sim: wording"))
    edit(sim, "/* Default to input mode. */", "/* Every line starts as an input. */")
    history.append(commit(where, "gpio: sim: reword a comment"))
    vcs.git(repo, "update-ref", "refs/harness/test-bisect", history[-1])
    vcs.git(repo, "worktree", "remove", "--force", str(where))
    return history

"""Bisection rules on real splats: runs per commit, what counts as a reproduction."""

from pathlib import Path

import pytest

from guest.protocol import ItemReport
from harness import evidence, splats
from harness.commands import bisection
from harness.results import Item, ItemResult
from harness.scenario import load_scenario
from tests.test_compare import CONTROLLER, REGMAP, SPI_NOR_READ, splats_of
from tests.test_inputs import harness
from tests.test_vcs import git, make_patches, repo  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = load_scenario(ROOT / "scenarios" / "mtd-spi-nor-unbind-during-read.yaml")
WARNING = splats_of("lkdtm-warning.log")[0]


def report_of(item: Item, cycles_done: int) -> ItemReport:
    """What the guest says of an item that ran ``cycles_done`` of its 5 cycles."""
    return ItemReport(item.id, item.scenario.name, 0, 0, cycles_done, 5, None, [], {}, [], False)


def result(*found, status=None, cycles_done=5, error=None) -> ItemResult:
    item = Item(SCENARIO.name, SCENARIO, 0, 0)
    r = ItemResult(item, splats=list(found), error=error)
    r.guest = None if error else report_of(item, cycles_done)
    r.status = status or ("error" if error else "fail" if found else "pass")
    return r


@pytest.mark.parametrize(
    "hits, ran, runs",
    [(1, 1, 7), (3, 3, 4), (3, 5, 7), (3, 10, 15), (1, 10, 49)],
)
def test_runs_per_commit_keep_a_miss_under_one_percent(hits, ran, runs):
    assert evidence.runs_needed(hits, ran) == runs
    rate = hits / (ran + 1)
    assert (1 - rate) ** runs <= 0.01 < (1 - rate) ** (runs - 1)


def test_only_the_target_bug_is_a_reproduction():
    assert bisection.classify(result(SPI_NOR_READ), SPI_NOR_READ).outcome == "reproduced"
    # the same freed object met elsewhere is the same bug
    dirmap = next(s for s in splats_of("harness-mtd-unbind-nx-fault.log") if s.kind == "kasan")
    assert bisection.classify(result(dirmap), SPI_NOR_READ).outcome == "reproduced"
    assert bisection.classify(result(REGMAP), SPI_NOR_READ).outcome == "other-crash"
    assert bisection.classify(result(), SPI_NOR_READ).outcome == "clean"


def test_another_crash_is_good_when_the_run_ended_and_skip_when_it_was_cut_short():
    ended = [bisection.classify(result(WARNING), SPI_NOR_READ)] * 3
    assert bisection.verdict_of(ended) == (
        "good",
        "3 runs without the target; other crash: WARNING in lkdtm_WARNING",
    )
    cut = [bisection.classify(result(CONTROLLER, cycles_done=1), SPI_NOR_READ)]
    assert cut[0].outcome == "cut-short"
    assert bisection.verdict_of(cut)[0] == "skip"
    died = [bisection.classify(result(error="could not start the guest: ..."), SPI_NOR_READ)]
    assert bisection.verdict_of(died)[0] == "skip"
    hit = [
        bisection.classify(result(WARNING), SPI_NOR_READ),
        bisection.classify(result(SPI_NOR_READ), SPI_NOR_READ),
    ]
    assert bisection.verdict_of(hit) == ("bad", "reproduced in 1 of 2")


def test_a_commit_where_the_scenario_does_not_apply_is_skip_not_good():
    absent = result(status="skipped", error="skipped: the tree has no include/linux/revocable.h")
    seen = [bisection.classify(absent, SPI_NOR_READ)] * 2
    assert bisection.verdict_of(seen) == (
        "skip",
        "the scenario did not run: skipped: the tree has no include/linux/revocable.h",
    )


def test_bisect_cli_bad_input(repo, tmp_path):  # noqa: F811
    env = {"HARNESS_CACHE": str(tmp_path / "cache")}
    args = ["bisect", "gpio-sim-remove-under-readers", "--tree", str(repo)]
    done = harness(*args, "--good", "HEAD", "--bad", "HEAD~1", env=env)
    assert done.returncode == 2, done.stderr
    assert "--good must be an ancestor of --bad" in done.stderr
    done = harness(*args, "--good", "nope", "--bad", "HEAD", env=env)
    assert done.returncode == 2 and "'nope' is not a commit" in done.stderr
    assert "Traceback" not in done.stderr


# one run of gpio-sim-remove-under-readers on tests/history.py's last commit (a real boot):
# the injected WARN at the first line request, then the injected use-after-free
GPIO_WARN, UAF = splats.parse(
    (ROOT / "tests" / "data" / "bisect" / "gpio-sim-warn-and-value-map-freed-early.log").read_text()
)
LOCKDEP = splats_of("module-abba.log")[0]  # possible deadlock in selftest_take_ba


class Recorded:
    """What bisection runs a commit with (bisection.RunCommit), for the git bisect driver
    over a real repository: building and booting the commit is replaced by its recorded
    runs (real splats), handed out one run at a time until the stopping rule says
    enough, as the runner does."""

    def __init__(self, runs_of):
        self.runs_of = runs_of  # commit -> the list of its runs (None: does not build)
        self.built: list[str] = []  # commits built and booted, in order

    def __call__(self, commit, role, runs, done):
        self.built.append(commit)
        recorded = self.runs_of(commit)
        tested = bisection.Tested(commit, f"subject of {commit[:7]}", role, build_s=1.0)
        if recorded is None:
            tested.built, tested.unbuilt = False, "make: *** [drivers/a.o] Error 1"
            return tested
        for i in range(runs):
            tested.results.append(recorded[i % len(recorded)])
            if done(tested.results):
                break
        return tested


def line_history(repo, n):  # noqa: F811
    commits = [git(repo, "rev-parse", "HEAD")]
    for i in range(n):
        (repo / "drivers" / "a.c").write_text(f"int a = {i};\n")
        git(repo, "commit", "-q", "-a", "-m", f"commit {i + 1}")
        commits.append(git(repo, "rev-parse", "HEAD"))
    return commits


def drive(repo, tmp_path, runs_of, old, new, fix=False, **options):  # noqa: F811
    from harness import vcs

    request = bisection.BisectRequest(out_dir=str(tmp_path / "out"), fix=fix, **options)
    with vcs.worktree(repo) as wt:
        recorded = Recorded(runs_of)
        (tmp_path / "out").mkdir(exist_ok=True)
        good, bad = (new, old) if fix else (old, new)
        commits = bisection.Commits(tmp_path / "out", recorded)
        outcome = bisection.bisect_bugs(commits, request, repo, wt, good, bad, old, new)
        return outcome, recorded


def one_bug(bad_from, skip=(), fixed=False):
    """Every commit from index ``bad_from`` on reproduces the lifetime bug in every run."""

    def runs_of(c, index):
        i = index[c]
        if i in skip:
            return [result(error="could not start the guest: ...")]
        has = (i < bad_from) if fixed else (i >= bad_from)
        return [result(SPI_NOR_READ, cycles_done=1)] if has else [result()]

    return runs_of


def test_git_bisect_driver_finds_the_culprit_and_keeps_the_log(repo, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    c = line_history(repo, 8)
    index = {x: i for i, x in enumerate(c)}
    runs_of = one_bug(6, skip={4})
    outcome, _ = drive(repo, tmp_path, lambda x: runs_of(x, index), c[0], c[8])
    assert outcome.exit_code == 0 and outcome.culprit["commit"] == c[6]
    assert outcome.culprit["subject"] == "commit 6"
    assert "# first bad commit" in (tmp_path / "out" / "bisect.log").read_text()
    (bug,) = outcome.bugs
    assert len([s for s in bug.steps if s.role.startswith("step")]) <= 5


def test_git_bisect_driver_says_inconclusive_among_skipped(repo, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    c = line_history(repo, 4)
    index = {x: i for i, x in enumerate(c)}
    runs_of = one_bug(4, skip={2, 3})
    outcome, _ = drive(repo, tmp_path, lambda x: runs_of(x, index), c[0], c[4])
    assert outcome.exit_code == 1
    assert outcome.result.startswith("inconclusive: the culprit is among skipped commits")
    assert set(outcome.bugs[0].skipped) >= {c[2], c[3]}


def test_fix_bisection_finds_the_first_commit_without_the_bug(repo, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    c = line_history(repo, 6)
    index = {x: i for i, x in enumerate(c)}
    runs_of = one_bug(4, fixed=True)
    outcome, _ = drive(repo, tmp_path, lambda x: runs_of(x, index), c[0], c[6], fix=True)
    assert outcome.exit_code == 0 and outcome.culprit["commit"] == c[4]
    assert "fixed" in outcome.result


def two_bugs(index, warn_from=2, uaf_from=6, build_break=4):
    """tests/history.py's shape: a WARN on the scenario's path from commit 2, a build break
    at 4, the use-after-free from 6; the WARN comes first in each run, the KASAN report
    cuts the run short."""

    def runs_of(c):
        i = index[c]
        if i == build_break:
            return None
        found = ([GPIO_WARN] if i >= warn_from else []) + ([UAF] if i >= uaf_from else [])
        return [result(*found, cycles_done=1 if i >= uaf_from else 5)]

    return runs_of


def test_every_bug_of_the_bad_commit_gets_its_own_culprit_most_severe_first(
    repo,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """The bad endpoint shows an unrelated WARN (from commit 2) and a use-after-free (from
    commit 6) in every run: both are bisected, the KASAN report first, and the WARN's
    bisection decides on the runs the first one already made wherever it can."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    c = line_history(repo, 8)
    index = {x: i for i, x in enumerate(c)}
    outcome, b = drive(repo, tmp_path, two_bugs(index), c[0], c[8])
    assert outcome.exit_code == 0, outcome.result
    uaf, warn = outcome.bugs
    assert (uaf.title, warn.title) == (UAF.title, GPIO_WARN.title)
    assert uaf.culprit["commit"] == c[6] and warn.culprit["commit"] == c[2]
    assert outcome.result == (
        f"2 bugs: {c[6][:12]} (commit 6) introduced {UAF.title}; "
        f"{c[2][:12]} (commit 2) introduced {GPIO_WARN.title}"
    )
    assert outcome.others == [] and outcome.already == []
    # the runs of every built commit are reused: the WARN's bisection builds less
    reused = [s for s in warn.steps if s.reused]
    assert reused, "the WARN's bisection reuses the UAF's runs"
    assert len(b.built) == len(set(b.built)), "no commit is built twice"
    assert len(b.built) < len(uaf.steps) + len(warn.steps)
    # a commit with the WARN only is good for the UAF (the run ended), bad for the WARN
    warned = [s for s in uaf.steps if index[s.tested.commit] in (2, 3, 5)]
    assert warned and all(s.verdict == "good" for s in warned)
    assert all("other crash: WARNING in gpio_sim_request" in s.why for s in warned)
    assert all(s.verdict == "bad" for s in warn.steps if index[s.tested.commit] in (2, 3, 5))
    # the build break is skip for both, in either's table
    for bug in outcome.bugs:
        assert all(s.verdict == "skip" for s in bug.steps if index[s.tested.commit] == 4)
    log = (tmp_path / "out" / "bisect.log").read_text()
    assert log.index(f"# bug: {UAF.title}") < log.index(f"# bug: {GPIO_WARN.title}")
    assert f"# first bad commit: [{c[6]}]" in log and f"# first bad commit: [{c[2]}]" in log


def test_title_chooses_one_bug_and_a_bug_the_good_commit_has_is_not_bisected(
    repo,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    c = line_history(repo, 8)
    index = {x: i for i, x in enumerate(c)}
    outcome, _ = drive(repo, tmp_path, two_bugs(index), c[0], c[8], title=GPIO_WARN.title)
    assert [bug.title for bug in outcome.bugs] == [GPIO_WARN.title]
    assert outcome.culprit["commit"] == c[2] and outcome.exit_code == 0
    assert outcome.others == [UAF.title]  # seen, never a target
    # the WARN is already on the good commit: only the use-after-free is bisected
    outcome, _ = drive(repo, tmp_path, two_bugs(index, warn_from=0), c[0], c[8])
    assert [bug.title for bug in outcome.bugs] == [UAF.title]
    assert outcome.already == [GPIO_WARN.title] and outcome.culprit["commit"] == c[6]


def test_severity_puts_memory_safety_before_lockdep_before_warn():
    runs = [result(GPIO_WARN, LOCKDEP), result(GPIO_WARN, UAF)]
    assert [s.title for s in bisection.distinct_bugs(runs)] == [
        UAF.title,
        LOCKDEP.title,
        GPIO_WARN.title,
    ]


def test_bisect_report_lists_each_bug_with_its_commits(repo, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    c = line_history(repo, 8)
    index = {x: i for i, x in enumerate(c)}
    outcome, _ = drive(repo, tmp_path, two_bugs(index), c[0], c[8])
    outcome.scenario, outcome.command = SCENARIO.name, ["harness", "bisect"]
    bisection.write_bisect(tmp_path / "out", outcome)
    text = (tmp_path / "out" / "bisect.md").read_text()
    assert f"bug 1: {UAF.title}" in text and f"bug 2: {GPIO_WARN.title}" in text
    assert "reused" in text
    junit = (tmp_path / "out" / "junit.xml").read_text()
    assert junit.count("<testcase") == 2 and "<failure" not in junit

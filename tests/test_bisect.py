"""Bisection rules on real splats: runs per commit, what counts as a reproduction."""

from pathlib import Path

import pytest

from harness import bisect
from harness.run import Item, ItemResult
from harness.scenario import load_scenario
from tests.test_compare import CONTROLLER, REGMAP, SPI_NOR_READ, splats_of
from tests.test_inputs import harness
from tests.test_vcs import git, make_patches, repo  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = load_scenario(ROOT / "scenarios" / "mtd-spi-nor-unbind-during-read.yaml")
WARNING = splats_of("lkdtm-warning.log")[0]


def result(*found, status=None, cycles_done=5, error=None) -> ItemResult:
    item = Item(SCENARIO.name, SCENARIO, 0, 0)
    r = ItemResult(item, splats=list(found), error=error)
    r.guest = {"cycles": 5, "cycles_done": cycles_done} if not error else None
    r.status = status or ("error" if error else "fail" if found else "pass")
    return r


@pytest.mark.parametrize(
    "hits, ran, runs",
    [(1, 1, 7), (3, 3, 4), (3, 5, 7), (3, 10, 15), (1, 10, 49)],
)
def test_runs_per_commit_keep_a_miss_under_one_percent(hits, ran, runs):
    assert bisect.runs_needed(hits, ran) == runs
    rate = hits / (ran + 1)
    assert (1 - rate) ** runs <= 0.01 < (1 - rate) ** (runs - 1)


def test_only_the_target_bug_is_a_reproduction():
    assert bisect.classify(result(SPI_NOR_READ), SPI_NOR_READ).outcome == "reproduced"
    # the same freed object met elsewhere is the same bug
    dirmap = next(s for s in splats_of("harness-mtd-unbind-nx-fault.log") if s.kind == "kasan")
    assert bisect.classify(result(dirmap), SPI_NOR_READ).outcome == "reproduced"
    assert bisect.classify(result(REGMAP), SPI_NOR_READ).outcome == "other-crash"
    assert bisect.classify(result(), SPI_NOR_READ).outcome == "clean"


def test_another_crash_is_good_when_the_run_ended_and_skip_when_it_was_cut_short():
    ended = [bisect.classify(result(WARNING), SPI_NOR_READ)] * 3
    assert bisect.verdict_of(ended) == (
        "good",
        "3 runs without the target; other crash: WARNING in lkdtm_WARNING",
    )
    cut = [bisect.classify(result(CONTROLLER, cycles_done=1), SPI_NOR_READ)]
    assert cut[0].outcome == "cut-short"
    assert bisect.verdict_of(cut)[0] == "skip"
    died = [bisect.classify(result(error="could not start the guest: ..."), SPI_NOR_READ)]
    assert bisect.verdict_of(died)[0] == "skip"
    hit = [
        bisect.classify(result(WARNING), SPI_NOR_READ),
        bisect.classify(result(SPI_NOR_READ), SPI_NOR_READ),
    ]
    assert bisect.verdict_of(hit) == ("bad", "reproduced in 1 of 2")


def test_a_commit_where_the_scenario_does_not_apply_is_skip_not_good():
    absent = result(status="skipped", error="skipped: the tree has no include/linux/revocable.h")
    seen = [bisect.classify(absent, SPI_NOR_READ)] * 2
    assert bisect.verdict_of(seen) == (
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


class Scripted(bisect._Bisector):
    """The git bisect driver over a real repository, with each commit's verdict scripted."""

    def __init__(self, request, worktree, verdicts):
        super().__init__(request, SCENARIO.path, worktree)
        self.verdicts = verdicts
        self.target = SPI_NOR_READ

    def test(self, commit, role, runs, stop_after):
        verdict = self.verdicts[commit]
        outcome = {"bad": "reproduced", "good": "clean", "skip": "no-verdict"}[verdict]
        runs_seen = [bisect.RunSeen("x", "fail", outcome, [])]
        tested = bisect.Tested(commit, "", role, verdict, "", runs=runs_seen, build_s=1.0)
        self.tested.append(tested)
        return tested


def line_history(repo, n):  # noqa: F811
    commits = [git(repo, "rev-parse", "HEAD")]
    for i in range(n):
        (repo / "drivers" / "a.c").write_text(f"int a = {i};\n")
        git(repo, "commit", "-q", "-a", "-m", f"commit {i + 1}")
        commits.append(git(repo, "rev-parse", "HEAD"))
    return commits


def drive(repo, tmp_path, verdicts, old, new, fix=False):  # noqa: F811
    from harness import vcs

    request = bisect.BisectRequest(out_dir=str(tmp_path / "out"), fix=fix, runs=1)
    with vcs.worktree(repo) as wt:
        b = Scripted(request, wt, verdicts)
        (tmp_path / "out").mkdir(exist_ok=True)
        good, bad = (new, old) if fix else (old, new)
        return bisect._bisect(b, request, repo, wt, good, bad, old, new)


def test_git_bisect_driver_finds_the_culprit_and_keeps_the_log(repo, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    c = line_history(repo, 8)
    verdicts = {x: ("good" if i < 6 else "bad") for i, x in enumerate(c)}
    verdicts[c[4]] = "skip"
    outcome = drive(repo, tmp_path, verdicts, c[0], c[8])
    assert outcome.exit_code == 0 and outcome.culprit["commit"] == c[6]
    assert outcome.culprit["subject"] == "commit 6"
    assert "# first bad commit" in (tmp_path / "out" / "bisect.log").read_text()
    assert len([t for t in outcome.tested if t.role.startswith("step")]) <= 5


def test_git_bisect_driver_says_inconclusive_among_skipped(repo, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    c = line_history(repo, 4)
    verdicts = {c[0]: "good", c[1]: "good", c[2]: "skip", c[3]: "skip", c[4]: "bad"}
    outcome = drive(repo, tmp_path, verdicts, c[0], c[4])
    assert outcome.exit_code == 1
    assert outcome.result.startswith("inconclusive: the culprit is among skipped commits")
    assert set(outcome.skipped) >= {c[2], c[3]}


def test_fix_bisection_finds_the_first_commit_without_the_bug(repo, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    c = line_history(repo, 6)
    verdicts = {x: ("bad" if i < 4 else "good") for i, x in enumerate(c)}
    outcome = drive(repo, tmp_path, verdicts, c[0], c[6], fix=True)
    assert outcome.exit_code == 0 and outcome.culprit["commit"] == c[4]
    assert "fixed" in outcome.result

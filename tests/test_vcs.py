"""The harness worktree and git am, on real (small) git repositories.

What matters to a user: their checkout is never touched, a series that does
not apply names the patch and leaves nothing half-applied, and a second run
after a failure works.
"""

import os
import subprocess
from pathlib import Path

import pytest

from harness import vcs
from tests.test_inputs import harness

ROOT = Path(__file__).resolve().parents[1]


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **vcs._IDENTITY}
    out = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True
    )
    return out.stdout.strip()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def repo(tmp_path) -> Path:
    """A user's checkout: two commits, a local edit and an untracked file."""
    path = tmp_path / "linux"
    (path / "drivers").mkdir(parents=True)
    (path / "drivers" / "a.c").write_text("int a(void)\n{\n\treturn 1;\n}\n")
    (path / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 12\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    (path / "drivers" / "b.c").write_text("int b;\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "second")
    (path / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 12\n# my local edit\n")
    (path / "notes.txt").write_text("untracked\n")
    return path


def make_patches(repo: Path, out: Path, edits: list[tuple[str, str, str]]) -> list[Path]:
    """Commit each (file, text, subject) on a scratch worktree and format-patch the lot."""
    scratch = out / "scratch"
    git(repo, "worktree", "add", "-q", "--detach", str(scratch), "HEAD")
    for name, text, subject in edits:
        (scratch / name).write_text(text)
        git(scratch, "add", "-A")
        git(scratch, "commit", "-q", "-m", subject)
    patches = out / "patches"
    git(scratch, "format-patch", "-q", "-o", str(patches), f"HEAD~{len(edits)}")
    git(repo, "worktree", "remove", "--force", str(scratch))
    return sorted(patches.glob("*.patch"))


def user_state(repo: Path) -> tuple[str, str, str]:
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "status", "--porcelain"),
        git(repo, "rev-parse", "--abbrev-ref", "HEAD"),
    )


def test_series_applies_in_the_harness_worktree_never_in_the_users_checkout(repo, tmp_path, cache):
    patches = make_patches(
        repo,
        tmp_path,
        [
            ("drivers/a.c", "int a(void)\n{\n\treturn 2;\n}\n", "a: return 2"),
            ("drivers/c.c", "int c;\n", "c: add"),
        ],
    )
    before = user_state(repo)
    with vcs.worktree(repo) as wt:
        assert wt.path.parent == cache / "worktrees"
        base = vcs.resolve(repo, "HEAD")
        head = wt.apply(base, patches)
        assert vcs.changed_files(repo, base, head) == ["drivers/a.c", "drivers/c.c"]
        assert vcs.subject(repo, head) == "c: add"
        assert (wt.path / "drivers" / "c.c").exists()
        wt.checkout(base)
        assert not (wt.path / "drivers" / "c.c").exists()
        first_path = wt.path
    assert user_state(repo) == before
    assert "my local edit" in (repo / "Makefile").read_text()
    with vcs.worktree(repo) as wt:  # one fixed path per repository
        assert wt.path == first_path


def test_a_patch_that_does_not_apply_names_it_and_leaves_nothing_behind(repo, tmp_path, cache):
    # made on HEAD, applied to HEAD~1, which has no drivers/b.c: the second patch fails
    good, bad = make_patches(
        repo,
        tmp_path,
        [("drivers/c.c", "int c;\n", "c: add"), ("drivers/b.c", "int b = 1;\n", "b: initialise")],
    )
    with vcs.worktree(repo) as wt:
        base = vcs.resolve(repo, "HEAD~1")
        with pytest.raises(vcs.ApplyError) as caught:
            wt.apply(base, [good, bad])
        err = caught.value
        assert err.subject == "b: initialise"
        assert err.patch_file == bad
        assert "drivers/b.c" in err.git_message
        assert "the worktree was reset" in str(err)
        assert git(wt.path, "rev-parse", "HEAD") == base
        assert git(wt.path, "status", "--porcelain", "--ignored") == ""
        assert not (wt.path / "drivers" / "c.c").exists()
        assert not Path(git(wt.path, "rev-parse", "--absolute-git-dir"), "rebase-apply").exists()
        # a second run, with a series that applies, works in the same worktree
        head = wt.apply(base, [good])
        assert vcs.changed_files(repo, base, head) == ["drivers/c.c"]


def test_an_interrupted_am_is_cleaned_up_by_the_next_checkout(repo, tmp_path, cache):
    (patch,) = make_patches(repo, tmp_path, [("drivers/b.c", "int b = 2;\n", "b: two")])
    with vcs.worktree(repo) as wt:
        base = vcs.resolve(repo, "HEAD~1")  # no drivers/b.c there: am stops half-way
        wt.checkout(base)
        subprocess.run(["git", "-C", str(wt.path), "am", str(patch)], capture_output=True)
        assert Path(git(wt.path, "rev-parse", "--absolute-git-dir"), "rebase-apply").exists()
        assert wt.checkout(base) == base
        assert git(wt.path, "status", "--porcelain") == ""
        assert not Path(git(wt.path, "rev-parse", "--absolute-git-dir"), "rebase-apply").exists()


def test_mbox_and_directory_inputs(repo, tmp_path):
    patches = make_patches(
        repo, tmp_path, [("drivers/b.c", "int b = 5;\n", "b: five"), ("x.c", "int x;\n", "x")]
    )
    assert vcs.series_files(patches[0].parent) == patches
    mbox = tmp_path / "series.mbox"
    mbox.write_text("".join(p.read_text() for p in patches))
    assert vcs.series_files(mbox) == [mbox]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(vcs.VcsError, match="no \\*.patch files"):
        vcs.series_files(empty)
    junk = tmp_path / "notes.txt"
    junk.write_text("hello\n")
    with pytest.raises(vcs.VcsError, match="not a patch or an mbox"):
        vcs.series_files(junk)


def test_unknown_revision_is_bad_input(repo):
    with pytest.raises(vcs.RevisionError, match="'v9.99' is not a commit"):
        vcs.resolve(repo, "v9.99")


def test_import_tree_makes_one_commit_of_everything_even_what_gitignore_hides(tmp_path):
    tree = tmp_path / "linux-source-6.12"
    tree.mkdir()
    (tree / ".gitignore").write_text("/*\n!/debian/\n")  # Debian's tarball ignores its top
    (tree / "Makefile").write_text("VERSION = 6\n")
    commit = vcs.import_tree(tree, "Linux 6")
    assert git(tree, "ls-files") == ".gitignore\nMakefile"
    assert vcs.import_tree(tree, "again") == commit
    # a kernel's ~80,000 loose objects must not start a background repack beside the build
    assert git(tree, "config", "gc.auto") == "0"


def test_the_same_sources_imported_twice_are_two_commits_of_one_tree(tmp_path):
    """What names a base across machines (benchmarks/mutants.py's keys) is its tree."""
    trees = []
    for n, when in enumerate(("2026-01-01T00:00:00", "2026-06-01T00:00:00")):
        tree = tmp_path / f"t{n}"
        tree.mkdir()
        (tree / "Makefile").write_text("VERSION = 6\n")
        os.environ["GIT_COMMITTER_DATE"] = when
        try:
            commit = vcs.import_tree(tree, "Linux 6")
        finally:
            del os.environ["GIT_COMMITTER_DATE"]
        trees.append((commit, vcs.tree_id(tree, commit)))
    assert trees[0][0] != trees[1][0] and trees[0][1] == trees[1][1]
    with pytest.raises(vcs.RevisionError):
        vcs.tree_id(tmp_path / "t0", "no-such-rev")


def test_series_cli_exit_3_for_a_patch_that_does_not_apply(repo, tmp_path, cache):
    (patch,) = make_patches(repo, tmp_path, [("drivers/b.c", "int b = 3;\n", "b: three")])
    args = ["series", "gpio-sim-plug-cycle", "--tree", str(repo), "--base", "HEAD~1"]
    env = {"HARNESS_CACHE": str(cache)}
    for _attempt in range(2):  # the second run meets the same worktree, reset
        done = harness(*args, "--series", str(patch), "--out", str(tmp_path / "r"), env=env)
        assert done.returncode == 3, done.stderr
        assert "patch does not apply: 'b: three'" in done.stderr
        assert str(patch) in done.stderr
        assert "drivers/b.c" in done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "r" / "junit.xml").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "give exactly one of --series"),
        (["--head", "HEAD", "--series", "README.md"], "give exactly one of --series"),
        (["--head", "no-such-rev"], "'no-such-rev' is not a commit"),
        (["--series", "README.md"], "not a patch or an mbox"),
    ],
)
def test_series_cli_bad_input_is_exit_2(repo, cache, extra, message):
    args = ["series", "--tree", str(repo), "--base", "HEAD", *extra]
    done = harness(*args, env={"HARNESS_CACHE": str(cache)})
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_series_cli_refuses_a_tree_that_is_not_a_repository(tmp_path, cache):
    plain = tmp_path / "plain"
    plain.mkdir()
    done = harness("series", "--tree", str(plain), "--base", "HEAD", "--head", "HEAD")
    assert done.returncode == 2
    assert "is not a git repository" in done.stderr


def test_series_with_head_on_a_repository_that_is_no_kernel_tree(repo, tmp_path, cache):
    before = user_state(repo)
    args = ["series", "gpio-sim-plug-cycle", "--tree", str(repo), "--base", "HEAD~1"]
    args += ["--head", "HEAD", "--out", str(tmp_path / "r")]
    done = harness(*args, env={"HARNESS_CACHE": str(cache)})
    assert done.returncode == 2, done.stderr
    assert "is not a kernel source tree" in done.stderr
    assert "Traceback" not in done.stderr
    assert user_state(repo) == before


def history(path: Path, n: int) -> list[str]:
    """A repository of n + 1 commits, each changing one file."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    commits = []
    for i in range(n + 1):
        (path / "a.c").write_text(f"int a = {i};\n")
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"commit {i}")
        commits.append(git(path, "rev-parse", "HEAD"))
    return commits


def test_bisection_names_the_first_new_commit_from_git_refs_not_its_messages(tmp_path):
    commits = history(tmp_path / "r", 16)
    index = {c: i for i, c in enumerate(commits)}
    seen: list[vcs.BisectPoint] = []

    def decide(point: vcs.BisectPoint) -> str:
        seen.append(point)
        return vcs.NEW if index[point.commit] >= 11 else vcs.OLD

    bisection = vcs.Bisection(tmp_path / "r", commits[0], commits[-1])
    found = bisection.run(decide)
    assert found.first == commits[11]
    assert [p.step for p in seen] == list(range(1, len(seen) + 1)) and len(seen) <= 5
    assert seen[0].steps_left >= 3  # git's estimate for 16 commits: about log2(16) in all
    assert f"# first bad commit: [{commits[11]}]" in bisection.log
    assert git(tmp_path / "r", "rev-parse", "HEAD") == commits[-1], "the bisection is reset"


def test_bisection_among_skipped_commits_is_inconclusive_with_every_candidate(tmp_path):
    commits = history(tmp_path / "r", 8)
    index = {c: i for i, c in enumerate(commits)}

    def decide(point: vcs.BisectPoint) -> str:
        i = index[point.commit]
        return vcs.SKIP if i in (4, 5) else vcs.NEW if i >= 5 else vcs.OLD

    found = vcs.Bisection(tmp_path / "r", commits[0], commits[-1]).run(decide)
    assert found.first is None
    assert set(found.candidates) == {commits[4], commits[5], commits[6]}, "git's 'could be any of'"


def test_bisection_with_its_own_terms_for_a_fix(tmp_path):
    commits = history(tmp_path / "r", 8)
    index = {c: i for i, c in enumerate(commits)}

    def decide(point: vcs.BisectPoint) -> str:  # the bug is gone from commit 3 on
        return vcs.NEW if index[point.commit] >= 3 else vcs.OLD

    bisection = vcs.Bisection(tmp_path / "r", commits[0], commits[-1], ("broken", "fixed"))
    assert bisection.run(decide).first == commits[3]
    assert "git bisect fixed" in bisection.log and "git bisect broken" in bisection.log


def test_a_fetched_tree_is_back_at_its_import_when_a_series_is_done_with_it(cache):
    """`harness fetch`'s trees live in the cache and a series or bisection moves their own
    checkout: when the holder is done, a run that names the tree tests the imported sources."""
    tree = cache / "trees" / "linux-source-7.3"
    (tree / "drivers").mkdir(parents=True)
    (tree / "Makefile").write_text("VERSION = 7\nPATCHLEVEL = 3\n")
    (tree / "Kconfig").write_text("\n")
    imported = vcs.import_tree(tree, "Linux 7.3")
    assert vcs.harness_owned(tree)
    with vcs.worktree(tree) as worktree:
        (tree / "drivers" / "a.c").write_text("int a;\n")
        git(tree, "add", "-A")
        git(tree, "commit", "-q", "-m", "series head")
        assert worktree.path == tree.resolve() and git(tree, "rev-parse", "HEAD") != imported
    assert git(tree, "rev-parse", "HEAD") == imported and not (tree / "drivers" / "a.c").exists()

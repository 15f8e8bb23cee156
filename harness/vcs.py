"""Version control for series and bisection: one harness-owned git worktree per repository.

The user's checkout is never touched (no checkout, stash or am in it): every
commit the harness builds is checked out in a worktree in the cache, at one
fixed path per repository, so kbuild's build directory for it stays the same
and each rebuild is incremental (git rewrites only the files that differ).
Patches are applied with ``git am --3way``, the tool that series come for.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from itertools import takewhile
from pathlib import Path

from harness import locks, paths
from harness.progress import say

# Commits the harness makes (the default tree's import, applied series) need an
# identity even on a machine where git has none configured.
_IDENTITY = {
    "GIT_AUTHOR_NAME": "lifetime-harness",
    "GIT_AUTHOR_EMAIL": "harness@localhost",
    "GIT_COMMITTER_NAME": "lifetime-harness",
    "GIT_COMMITTER_EMAIL": "harness@localhost",
}
GIT_TIMEOUT = 900.0


class VcsError(Exception):
    """A git operation failed; the message carries git's own words."""


class RevisionError(VcsError):
    """A revision the user named does not exist (bad input, not a build problem)."""


class ApplyError(VcsError):
    """A patch of the series did not apply: which one, and git's words."""

    def __init__(self, patch_file: Path, subject: str, git_message: str):
        super().__init__(subject)
        self.patch_file = patch_file
        self.subject = subject
        self.git_message = git_message

    def __str__(self) -> str:
        return (
            f"patch does not apply: {self.subject!r} ({self.patch_file})\n"
            f"git am says:\n{self.git_message}\n"
            "the worktree was reset; nothing of the series stays applied"
        )


def git(repo: Path, *args: str, identity: bool = False, ok: tuple[int, ...] = (0,)) -> str:
    """Run git in ``repo``; its stdout, or VcsError with its stderr (an exit status not in
    ``ok``)."""
    env = {**os.environ, **_IDENTITY} if identity else None
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            errors="replace",
            env=env,
            timeout=GIT_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VcsError(f"git {' '.join(args)} in {repo}: {exc}") from exc
    if out.returncode not in ok:
        said = "\n".join(x for x in (out.stdout.strip(), out.stderr.strip()) if x)[-3000:]
        raise VcsError(f"git {' '.join(args)} in {repo} failed: {said}")
    return out.stdout.strip()


def is_repository(path: Path) -> bool:
    try:
        git(path, "rev-parse", "--git-dir")
    except VcsError:
        return False
    return True


IMPORT_REF = "refs/harness/import"


def import_tree(path: Path, message: str) -> str:
    """Make an unpacked source tree a repository with one commit of all of it (once)."""
    if is_repository(path) and _has_commit(path):
        try:
            return resolve(path, IMPORT_REF)
        except RevisionError:  # imported before the ref existed: the one root commit
            root = git(path, "rev-list", "--max-parents=0", "HEAD").splitlines()[-1]
            git(path, "update-ref", IMPORT_REF, root)
            return root
    say(f"tree: making {path} a git repository (once; about 30 s)")
    git(path, "init", "-q")
    # no automatic gc: after the import commit it would repack ~80,000 loose objects in
    # the background for minutes, on the cores the kernel build needs
    git(path, "config", "gc.auto", "0")
    git(path, "add", "-A", "--force", ".")  # Debian's .gitignore ignores the top level
    git(path, "commit", "-q", "--no-verify", "-m", message, identity=True)
    commit = git(path, "rev-parse", "HEAD")
    git(path, "update-ref", IMPORT_REF, commit)
    return commit


def restore_import(path: Path) -> None:
    """Put an imported tree back at its imported commit (a series leaves it at its head)."""
    imported = resolve(path, IMPORT_REF)
    if git(path, "rev-parse", "HEAD") != imported:
        say(f"tree: putting {path} back at the imported commit {imported[:12]}")
        Worktree(path, path).checkout(imported)


def _has_commit(path: Path) -> bool:
    try:
        git(path, "rev-parse", "--verify", "HEAD^{commit}")
    except VcsError:
        return False
    return True


def resolve(repo: Path, rev: str) -> str:
    """The full commit id of ``rev`` in ``repo``."""
    return _peel(repo, rev, "commit")


def _peel(repo: Path, rev: str, kind: str) -> str:
    """The id of ``rev``'s commit or tree; RevisionError if it names no commit."""
    try:
        return git(repo, "rev-parse", "--verify", "--end-of-options", f"{rev}^{{{kind}}}")
    except VcsError:
        raise RevisionError(f"{rev!r} is not a commit in {repo}") from None


def tree_id(repo: Path, rev: str) -> str:
    """The id of ``rev``'s tree: the same sources have it whoever committed them, and when."""
    return _peel(repo, rev, "tree")


def is_ancestor(repo: Path, old: str, new: str) -> bool:
    try:
        git(repo, "merge-base", "--is-ancestor", old, new)
    except VcsError:
        return False
    return True


def subject(repo: Path, rev: str) -> str:
    return git(repo, "log", "-1", "--format=%s", rev)


def changed_files(repo: Path, old: str, new: str) -> list[str]:
    """Paths that differ between two commits (what a series touches)."""
    out = git(repo, "diff", "--name-only", "--no-renames", old, new)
    return [line for line in out.splitlines() if line]


@dataclass(frozen=True)
class Worktree:
    """The harness's own checkout of a repository, at a fixed path in the cache."""

    repo: Path  # the user's repository (its common git dir is never written but for metadata)
    path: Path

    def checkout(self, rev: str) -> str:
        """Put the worktree at ``rev`` (detached), dropping anything left from before."""
        self._abort_am()
        git(self.path, "checkout", "-q", "--detach", "--force", rev)
        git(self.path, "clean", "-q", "-fdx")
        return git(self.path, "rev-parse", "HEAD")

    def _abort_am(self) -> None:
        rebase_apply = Path(git(self.path, "rev-parse", "--absolute-git-dir")) / "rebase-apply"
        if rebase_apply.exists():
            try:
                git(self.path, "am", "--abort")
            except VcsError:
                pass
            if rebase_apply.exists():
                git(self.path, "am", "--quit")

    def apply(self, base: str, patches: list[Path]) -> str:
        """Check out ``base`` and ``git am --3way`` the patch files in order; the head commit.

        A patch that does not apply leaves the worktree back at ``base``.
        """
        self.checkout(base)
        for patch in patches:
            try:
                git(self.path, "am", "--3way", str(patch), identity=True)
            except VcsError as exc:
                failed = _failed_subject(str(exc)) or _first_subject(patch)
                self.checkout(base)
                raise ApplyError(patch, failed, _git_words(str(exc))) from None
        return git(self.path, "rev-parse", "HEAD")

    def keep(self, name: str, commit: str) -> None:
        """A ref in the harness's namespace, so a commit made by ``am`` survives git gc."""
        git(self.repo, "update-ref", f"refs/harness/{name}", commit)


def _failed_subject(message: str) -> str | None:
    m = re.search(r"Patch failed at \d+ (.*)", message)
    return m.group(1).strip() if m else None


def _first_subject(patch: Path) -> str:
    lines = patch.read_text(errors="replace").splitlines()
    for index, line in enumerate(lines):
        if line.startswith("Subject:"):
            folded = [line.removeprefix("Subject:")]
            folded += takewhile(lambda x: x[:1] in (" ", "\t"), lines[index + 1 :])
            text = " ".join(part.strip() for part in folded)
            return re.sub(r"^\[PATCH[^]]*\]\s*", "", text)
    return patch.name


def _git_words(message: str) -> str:
    """git am's diagnosis without its generic advice about --continue/--skip."""
    message = re.sub(r"^git am .*? failed: ", "", message, count=1, flags=re.DOTALL)
    lines = [
        line
        for line in message.splitlines()
        if line.strip()
        and not line.startswith("hint:")
        and not re.search(r'"git am --\w+"|git am --(?:continue|skip|abort)', line)
    ]
    return "\n".join(lines[-12:])


def use_lock(checkout: Path) -> Path:
    """The lock of a harness-owned checkout: shared while a run reads it, exclusive
    while a series or a bisection moves it between commits."""
    return checkout.parent / f"{checkout.name}.use.lock"


def harness_owned(repo: Path) -> bool:
    """A repository the harness made (the default tree): its own checkout is the worktree."""
    trees = (paths.cache_dir() / "trees").resolve()
    return repo.resolve().parent == trees


def worktree_path(repo: Path) -> Path:
    """One fixed path per repository (keyed by its common git directory)."""
    if harness_owned(repo):
        return repo.resolve()
    common = Path(git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir"))
    key = hashlib.sha256(str(common.resolve()).encode()).hexdigest()[:10]
    top = Path(git(repo, "rev-parse", "--show-toplevel")).name
    return paths.cache_dir() / "worktrees" / f"{top}-{key}"


@contextmanager
def worktree(repo: Path) -> Iterator[Worktree]:
    """The repository's harness worktree, created once, held (flock) while in use.

    A tree the harness imported (the default tree, `harness fetch`'s) is its own
    worktree: it is put back at its import when the holder is done, so a later run
    that names it tests the imported sources, not where a series left it.
    """
    if not is_repository(repo):
        raise VcsError(
            f"{repo} is not a git repository; series and bisection need commits "
            "(pass --tree with a git checkout, or no --tree for the default tree)"
        )
    path = worktree_path(repo)
    path.parent.mkdir(parents=True, exist_ok=True)
    with locks.hold(use_lock(path), f"the worktree {path}"):
        if path != repo.resolve() and (not is_repository(path) or not (path / ".git").is_file()):
            say(f"worktree: creating {path} (once)")
            git(repo, "worktree", "prune")
            if path.exists():
                raise VcsError(f"{path} exists but is not a worktree of {repo}; remove it")
            git(repo, "worktree", "add", "-q", "--detach", str(path), "HEAD")
        try:
            yield Worktree(repo, path)
        finally:
            if path == repo.resolve():
                with suppress(RevisionError):  # no import of the harness's: leave it
                    restore_import(repo)


def series_files(path: Path) -> list[Path]:
    """An mbox (b4 am, git format-patch --stdout) or a directory of *.patch, in order."""
    path = path.resolve()  # git am runs in the worktree
    if path.is_dir():
        found = sorted(path.glob("*.patch"))
        if not found:
            raise VcsError(f"{path}: no *.patch files in this directory")
        return found
    if not path.is_file():
        raise VcsError(f"{path}: no such file or directory")
    text = path.read_text(errors="replace")
    if not re.search(r"^(From |Subject:|diff --git )", text, re.MULTILINE):
        raise VcsError(f"{path}: not a patch or an mbox (no 'From ', 'Subject:' or 'diff --git')")
    return [path]


# --- bisection -----------------------------------------------------------------------

OLD, NEW, SKIP = "old", "new", "skip"  # what a tested commit is: like the old end, the new, neither


@dataclass(frozen=True)
class BisectPoint:
    """The commit git bisect checked out, and how far along the bisection is."""

    commit: str
    step: int  # 1 for the first commit tested
    steps_left: int  # git's estimate of the steps after this one (rev-list --bisect-vars)


@dataclass
class BisectResult:
    first: str | None  # the first commit in the new state, when git could name one
    candidates: list[str]  # otherwise: the commits it could be (skipped ones and the new end)


@dataclass
class Bisection:
    """``git bisect`` in a worktree, decided by a callable, read from git's refs.

    The end is taken from refs/bisect/ (the new end, the old ends, the skipped
    commits): the first new commit is found when no untested commit is left
    between the new end and the old ones, and the bisection is inconclusive
    when only skipped ones are. git's messages are not read, so no git
    version's wording changes a verdict. ``log`` (git bisect log, which git
    bisect replay takes) is there after ``run``, also when it raised.
    """

    path: Path
    old: str
    new: str
    terms: tuple[str, str] = ("good", "bad")  # git's names for the old and the new state
    log: str = field(default="", init=False)

    def run(self, decide: Callable[[BisectPoint], str]) -> BisectResult:
        """Bisect, asking ``decide`` (OLD, NEW or SKIP) about each commit git checks out."""
        term_old, term_new = self.terms
        named = (
            []
            if self.terms == ("good", "bad")
            else [f"--term-old={term_old}", f"--term-new={term_new}"]
        )
        git(self.path, "bisect", "reset")  # a bisection left behind by a killed run
        git(self.path, "bisect", "start", *named, self.new, self.old)
        marks = {OLD: term_old, NEW: term_new, SKIP: "skip"}
        step = 0
        try:
            while (left := self._left()) is not None:
                step += 1
                point = BisectPoint(git(self.path, "rev-parse", "HEAD"), step, left)
                # exit status 2: only skipped commits are left, which _left() then sees
                git(self.path, "bisect", marks[decide(point)], ok=(0, 2))
            return self._result()
        finally:
            self.log = git(self.path, "bisect", "log")
            git(self.path, "bisect", "reset")

    def _refs(self) -> tuple[str, list[str], set[str]]:
        term_old, term_new = self.terms
        new = git(self.path, "rev-parse", f"refs/bisect/{term_new}")
        listed = ["for-each-ref", "--format=%(objectname)"]
        olds = git(self.path, *listed, f"refs/bisect/{term_old}-*").split()
        skips = set(git(self.path, *listed, "refs/bisect/skip-*").split())
        return new, olds, skips

    def _candidates(self) -> tuple[str, list[str], set[str]]:
        new, olds, skips = self._refs()
        return new, git(self.path, "rev-list", new, "--not", *olds).split(), skips

    def _left(self) -> int | None:
        """Steps git expects after the commit it checked out; None when nothing is left."""
        new, candidates, skips = self._candidates()
        if all(c == new or c in skips for c in candidates):
            return None
        _, olds, _ = self._refs()
        said = git(self.path, "rev-list", "--bisect-vars", new, "--not", *olds)
        found = re.search(r"^bisect_steps=(\d+)$", said, re.M)
        return int(found.group(1)) if found else 0

    def _result(self) -> BisectResult:
        new, candidates, _ = self._candidates()
        if candidates == [new]:
            return BisectResult(new, [new])
        return BisectResult(None, candidates)

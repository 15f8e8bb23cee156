"""Kernel source trees: the user's (``--tree``) or Debian's linux-source tarball.

The tarball is unpacked once into the cache and made a git repository with one
commit, so patch series apply to it with ``git am`` and bases are commits.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness import locks, paths, vcs
from harness.progress import say


class TreeError(Exception):
    """A tree that cannot be used, with what to do about it."""


@dataclass(frozen=True)
class KernelTree:
    path: Path
    version: str  # from the top Makefile, e.g. 6.12.117
    git_commit: str | None
    git_describe: str | None
    git_dirty: bool
    origin: str  # "tarball:<file>" or "user"

    @property
    def identity(self) -> str:
        """Stable name of this tree's location: build directories are keyed by it.

        Content changes keep the identity (and so the build directory), which
        is what makes the rebuild incremental.
        """
        return hashlib.sha256(str(self.path).encode()).hexdigest()[:12]

    def describe(self) -> str:
        if self.git_commit:
            dirty = "-dirty" if self.git_dirty else ""
            return f"{self.path} ({self.git_describe or self.git_commit[:12]}{dirty})"
        return f"{self.path} (Linux {self.version})"


def makefile_version(path: Path) -> str:
    fields = {}
    try:
        head = (path / "Makefile").read_text(errors="replace").splitlines()[:12]
    except OSError:
        return ""
    for line in head:
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    parts = [fields.get(k, "") for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL")]
    if not parts[0]:
        return ""
    return ".".join(p for p in parts if p) + fields.get("EXTRAVERSION", "")


def _git(path: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def open_tree(path: Path, origin: str = "user") -> KernelTree:
    """Check that ``path`` is a kernel source tree usable for an O= build."""
    path = path.resolve()
    if not (path / "Makefile").is_file() or not (path / "Kconfig").is_file():
        raise TreeError(f"{path} is not a kernel source tree (no top-level Makefile and Kconfig)")
    if (path / ".config").exists() or (path / "include" / "config").is_dir():
        raise TreeError(
            f"{path} has been configured or built in place; the harness builds out of tree "
            f"(O=) and kbuild refuses that on an unclean tree. Run 'make -C {path} mrproper' "
            "(this deletes the in-tree build) or pass a clean worktree."
        )
    commit = _git(path, "rev-parse", "HEAD") if (path / ".git").exists() else None
    describe = _git(path, "describe", "--always", "--tags") if commit else None
    dirty = bool(_git(path, "status", "--porcelain", "--untracked-files=no")) if commit else False
    return KernelTree(path, makefile_version(path), commit, describe, dirty, origin)


def default_tree_path(tarball: Path = paths.DEFAULT_SOURCE_TARBALL) -> Path:
    stem = tarball.name.removesuffix(".tar.xz").removesuffix(".tar.gz")
    return paths.cache_dir() / "trees" / stem


def default_tree(tarball: Path = paths.DEFAULT_SOURCE_TARBALL, restore: bool = True) -> KernelTree:
    """Debian's linux-source tarball, unpacked once into the cache, as a git repository.

    Its checkout is the harness's own (series work in it directly, so they share
    the default run's build directory): a run finds it back at the imported
    commit, and only the files a series touched are rewritten and rebuilt.
    ``restore=False`` is for who moves it (under vcs.worktree's exclusive lock).
    """
    if not tarball.is_file():
        raise TreeError(
            f"no --tree given and the default tree {tarball} is missing; "
            "install it with 'apt-get install linux-source-6.12' or pass --tree PATH"
        )
    dest = default_tree_path(tarball)
    dest_root = dest.parent
    with locks.hold(dest_root / f"{dest.name}.lock", f"the default tree {dest}"):
        _unpack_once(tarball, dest_root, dest)
        try:
            vcs.import_tree(dest, f"Linux {makefile_version(dest)} as unpacked from {tarball}")
            if restore:
                vcs.restore_import(dest)
        except vcs.VcsError as exc:
            raise TreeError(f"the default tree's git repository: {exc}") from exc
    return open_tree(dest, origin=f"tarball:{tarball}")


def _unpack_once(tarball: Path, dest_root: Path, dest: Path) -> None:
    stem = dest.name
    stamp = dest_root / f"{stem}.unpacked"
    want = f"{tarball.stat().st_size}:{tarball.stat().st_mtime_ns}"
    if not (stamp.exists() and stamp.read_text() == want and dest.is_dir()):
        say(f"tree: unpacking {tarball} into {dest_root} (once; about 15 s)")
        shutil.rmtree(dest, ignore_errors=True)
        dest_root.mkdir(parents=True, exist_ok=True)
        unpack = subprocess.run(
            ["tar", "-xf", str(tarball), "-C", str(dest_root)], capture_output=True, text=True
        )
        if unpack.returncode != 0:
            raise TreeError(f"unpacking {tarball} failed: {unpack.stderr.strip()[-500:]}")
        if not dest.is_dir():
            raise TreeError(f"{tarball} did not unpack into {dest}")
        stamp.write_text(want)
    else:
        say(f"tree: using {dest} (unpacked from {tarball})")

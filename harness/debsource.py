"""Debian's linux-source packages as kernel trees, fetched without touching the host's apt.

Users bring other kernels than the default; Debian packages the ones the
harness is proven on (its kernel matrix). Each package is downloaded once with
a private apt setup (sources list, package lists and caches under the harness
cache: the machine's own apt configuration is never changed), its tarball is
taken out of the .deb, and ``tree.default_tree`` unpacks it and makes it a git
repository like the default tree.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness import locks, paths
from harness.progress import say


class SourceError(Exception):
    """A source package that could not be fetched, with what to do about it."""


@dataclass(frozen=True)
class SourcePackage:
    name: str  # linux-source-7.3
    suite: str  # the Debian suite that carries it
    archive: str = "http://deb.debian.org/debian"

    @property
    def tarball_name(self) -> str:
        return f"{self.name}.tar.xz"


# The kernel matrix (benchmarks/kernels.py): the older LTS, the default, mainline.
MATRIX = {
    "6.1": SourcePackage("linux-source-6.1", "bookworm"),
    "6.12": SourcePackage("linux-source-6.12", "bookworm"),
    "7.3": SourcePackage("linux-source-7.3", "trixie-backports"),
}
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def package(name: str) -> SourcePackage:
    """'7.3' or 'linux-source-7.3' -> its package; anything else is bad input."""
    for key, known in MATRIX.items():
        if name in (key, known.name):
            return known
    raise SourceError(
        f"no known Debian source package {name!r}; known: "
        + ", ".join(f"{k} ({p.name}, {p.suite})" for k, p in MATRIX.items())
    )


def _apt_options(root: Path) -> list[str]:
    """A private apt: its own sources, lists and caches; only dpkg's status is the host's."""
    return [
        "-o", f"Dir::Etc::sourcelist={root / 'sources.list'}",
        "-o", f"Dir::Etc::sourceparts={root / 'sources.list.d'}",
        "-o", f"Dir::State::Lists={root / 'lists'}",
        "-o", f"Dir::Cache={root / 'cache'}",
        "-o", "APT::Get::List-Cleanup=0",
        "-o", "Debug::NoLocking=1",
    ]  # fmt: skip


def _apt(root: Path, *args: str, cwd: Path) -> None:
    command = ["apt-get", "-q", *_apt_options(root), *args]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, errors="replace")
    if done.returncode != 0:
        raise SourceError(
            f"'{' '.join(['apt-get', *args])}' (private apt setup in {root}) failed "
            f"(exit {done.returncode}): {(done.stderr or done.stdout).strip()[-600:]}"
        )


def tarball(source: SourcePackage) -> Path:
    """The package's tarball: the installed one (/usr/src) if the host has it, else fetched."""
    installed = Path("/usr/src") / source.tarball_name
    return installed if installed.is_file() else fetch_tarball(source)


def fetch_tarball(source: SourcePackage) -> Path:
    """The package's kernel tarball in the cache, downloaded and extracted once."""
    root = paths.cache_dir() / "debian" / source.suite
    tarball = paths.cache_dir() / "debian" / source.tarball_name
    if tarball.is_file():
        return tarball
    with locks.hold(root.parent / f"{source.name}.lock", f"the download of {source.name}"):
        if tarball.is_file():
            return tarball
        for sub in ("lists/partial", "cache/archives/partial", "sources.list.d", "debs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        keyring = f"[signed-by={KEYRING}] " if KEYRING.is_file() else ""
        (root / "sources.list").write_text(f"deb {keyring}{source.archive} {source.suite} main\n")
        say(f"tree: fetching {source.name} from Debian {source.suite} (once)")
        _apt(root, "update", cwd=root)
        debs = root / "debs"
        for old in debs.glob(f"{source.name}_*.deb"):
            old.unlink()
        _apt(root, "download", source.name, cwd=debs)
        found = sorted(debs.glob(f"{source.name}_*.deb"))
        if not found:
            raise SourceError(f"apt-get download {source.name} left no .deb in {debs}")
        _extract(found[-1], f"./usr/src/{source.tarball_name}", tarball)
    return tarball


def _extract(deb: Path, member: str, dest: Path) -> None:
    """One file of a .deb's data archive, written whole or not at all."""
    partial = dest.with_name(dest.name + ".partial")
    with partial.open("wb") as sink:
        fsys = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        tar = subprocess.run(
            ["tar", "-xO", "-f", "-", member],
            stdin=fsys.stdout,
            stdout=sink,
            stderr=subprocess.PIPE,
        )
        fsys.wait()
    if fsys.returncode != 0 or tar.returncode != 0:
        partial.unlink(missing_ok=True)
        raise SourceError(
            f"{deb} holds no {member}: {tar.stderr.decode(errors='replace').strip()[-300:]}"
        )
    partial.replace(dest)

"""Where the project's data lives and where the harness caches trees and builds."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
KCONFIG_DIR = PROJECT_DIR / "kconfigs"
SCENARIOS_DIR = PROJECT_DIR / "scenarios"
GUEST_DIR = PROJECT_DIR / "guest"
HELPER_MODULES_DIR = GUEST_DIR / "modules"

# Fragments every harness kernel gets, in merge order. lkdtm lets the
# harness prove its detectors on the very kernel under test (tests/selftest).
BASE_FRAGMENTS = ("base", "debug", "lkdtm")

DEFAULT_SOURCE_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")


def atomic_write(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all: a run sharing the cache or a reader never sees half.

    The partial file is per process, so two runs writing the same entry do not
    write into one partial file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(text)
    os.replace(partial, path)


def cache_dir() -> Path:
    """$HARNESS_CACHE, else $XDG_CACHE_HOME/lifetime-harness, else ~/.cache/lifetime-harness."""
    explicit = os.environ.get("HARNESS_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "lifetime-harness"


def fragment_names() -> list[str]:
    return sorted(p.stem for p in KCONFIG_DIR.glob("*.config"))


def fragment_path(name: str) -> Path:
    return KCONFIG_DIR / f"{name}.config"


def builtin_scenarios() -> list[Path]:
    return sorted(SCENARIOS_DIR.glob("*.yaml"))

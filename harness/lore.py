"""A series as it lives on the mailing list: a thread mbox or a message-id, through b4.

A thread (``b4 mbox``, lore's t.mbox.gz) holds cover letters, several versions
of the series and replies that quote patches; ``git am`` on it applies the
wrong things. ``b4 am`` (kernel.org's tool) picks one version, collects the
trailers replies gave and writes an am-ready mbox; the harness runs it, offline
for a file, and reads what it says. b4 exits 0 on a version with patches
missing (it only warns): that is refused here, naming what is missing.
"""

from __future__ import annotations

import email.policy
import gzip
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from email.parser import BytesParser
from pathlib import Path

FETCH_TIMEOUT = 120.0  # b4 fetching a thread from lore
_LATEST = re.compile(r"Will use the latest revision: v(\d+)")
_MISSING = re.compile(r"ERROR: missing \[(\d+)/(\d+)\]!")
_LINK = re.compile(r"Link: https://\S+/(\S+@\S+?)\s*$", re.MULTILINE)
_HEADER = re.compile(rb"^Message-I[Dd]:\s*<", re.MULTILINE | re.IGNORECASE)


class LoreError(Exception):
    """The thread cannot give a series to apply; the message says why and what to pass."""


@dataclass(frozen=True)
class ThreadSeries:
    """The version of a thread's series the harness applies, as b4 made it ready."""

    source: str  # the file or message-id the user gave
    mbox: Path  # patches only, trailers applied: what git am gets
    version: int
    patches: int
    subject: str  # the cover letter's (or the first patch's), as posted
    message_id: str  # of the cover letter (or the first patch)

    def to_json(self) -> dict:
        return {**asdict(self), "mbox": str(self.mbox)}

    def describe(self) -> str:
        return (
            f"v{self.version} of {self.subject!r} <{self.message_id}>, {self.patches} patch(es) "
            f"from {self.source} (b4 am: trailers applied)"
        )


def is_thread(path: Path) -> bool:
    """A mail thread (what b4 or lore gives) rather than git format-patch output: gzip'd,
    or its messages carry Message-IDs (format-patch writes none without --thread)."""
    if not path.is_file():
        return False
    with path.open("rb") as f:
        head = f.read(2)
    return head == b"\x1f\x8b" or bool(_HEADER.search(path.read_bytes()))


def is_message_id(spec: str) -> bool:
    """'<id@host>', 'id@host' or a lore URL, not a path that exists."""
    if Path(spec).exists():
        return False
    return spec.startswith(("https://", "http://")) or bool(
        re.fullmatch(r"<?[^\s/<>]+@[^\s/<>]+>?", spec)
    )


def _b4() -> str:
    beside = Path(sys.executable).parent / "b4"
    found = str(beside) if beside.exists() else shutil.which("b4")
    if found is None:
        raise LoreError("b4 is not installed (make deps installs it into .venv)")
    return found


def take(spec: str, out: Path, version: int | None = None) -> ThreadSeries:
    """The series ``spec`` (a thread mbox, gzip'd or not, or a message-id/lore URL) names,
    in version ``version`` or the newest, as an am-ready mbox in ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    home = out / "b4-home"  # b4 keeps a record of every am in ~/.local/share/b4
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home)}
    pick = ["-v", str(version)] if version is not None else []
    fetch = is_message_id(spec)
    if fetch:
        args = [_b4(), "--no-stdin", "am", *pick, "-o", str(out), "-n", "series", spec]
        data = b""
    else:
        raw = Path(spec).read_bytes()
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        args = [_b4(), "--offline-mode", "--no-stdin", "am", "-m", "-", *pick]
        args += ["-o", str(out), "-n", "series"]
    try:
        done = subprocess.run(
            args, input=data, capture_output=True, env=env, timeout=FETCH_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LoreError(_offline_help(spec, f"b4 got no answer in {FETCH_TIMEOUT:g} s")) from exc
    said = done.stderr.decode(errors="replace")
    return _read(spec, out, version, done.returncode, said, fetch)


def _read(spec: str, out: Path, version: int | None, code: int, said: str, fetch: bool):
    last = [line.strip() for line in said.splitlines() if line.strip()][-1:] or ["(nothing)"]
    if code != 0:
        if fetch:
            raise LoreError(_offline_help(spec, f"b4 said: {last[0]}"))
        raise LoreError(f"{spec}: b4 am could not read it as a mail thread ({last[0]})")
    if m := re.search(r"Unable to find revision (\d+)", said):
        raise LoreError(f"{spec}: the thread has no v{m.group(1)} of the series (--series-version)")
    if "No patches found" in said:
        raise LoreError(f"{spec}: the thread has no patches (only replies?)")
    found = version or (int(m.group(1)) if (m := _LATEST.search(said)) else 1)
    if missing := _MISSING.findall(said):
        total = int(missing[0][1])
        gone = ", ".join(f"[{k}/{n}]" for k, n in missing)
        older = f"--series-version {found - 1} for v{found - 1}, or " if found > 1 else ""
        raise LoreError(
            f"{spec}: v{found} of the series is incomplete: {gone} not in the thread "
            f"({total - len(missing)} of {total} patches); pass {older}a thread that has them"
        )
    mbox = out / "series.mbx"
    if not mbox.is_file():
        raise LoreError(f"{spec}: b4 am wrote no patches ({last[0]})")
    patches = _messages(mbox)
    cover_file = out / "series.cover"
    cover = _messages(cover_file)[0] if cover_file.is_file() else patches[0]
    link = _LINK.search(said)
    return ThreadSeries(
        source=spec,
        mbox=mbox,
        version=found,
        patches=len(patches),
        subject=" ".join(str(cover["Subject"]).split()),
        message_id=link.group(1) if link else str(cover["Message-ID"] or "").strip("<>"),
    )


def _messages(path: Path) -> list:
    parser = BytesParser(policy=email.policy.default)
    chunks = re.split(rb"(?m)^From [^\n]*\n", path.read_bytes())
    return [parser.parsebytes(chunk) for chunk in chunks if chunk.strip()]


def _offline_help(spec: str, why: str) -> str:
    mid = spec.rstrip("/").rsplit("/", 1)[-1].strip("<>") if "/" in spec else spec.strip("<>")
    return (
        f"--series {spec}: fetching a thread needs network access to lore.kernel.org ({why}). "
        f"Without it, save the thread elsewhere (b4 mbox {mid}, or "
        f"https://lore.kernel.org/all/{mid}/t.mbox.gz) and pass the file: --series t.mbox.gz"
    )

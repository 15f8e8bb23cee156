"""Reading files a user hands the harness, with errors that name file and line.

Scenario files and kconfig fragments must be UTF-8 text; console logs may
carry a few stray bytes from a serial line, but a binary file is not a log.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# A console log with more undecodable bytes than this share is not a log.
LOG_BAD_BYTES_MAX = 0.01


@dataclass(frozen=True)
class TextFileError(Exception):
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def read_text(path: Path, what: str) -> str:
    """The file as UTF-8; a non-UTF-8 file is a TextFileError at the first bad byte."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TextFileError(path, 1, f"cannot read: {exc.strerror}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = _line_of(data, exc.start)
        raise TextFileError(
            path,
            line,
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            f"a {what} must be a UTF-8 text file: re-save it as UTF-8 (e.g. "
            f"'iconv -f latin1 -t utf-8') or check that it is the right file",
        ) from exc


def read_log(path: Path) -> str:
    """A console log, tolerating stray bytes but refusing binary files."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TextFileError(path, 1, f"cannot read: {exc.strerror}") from exc
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") + text.count("\0")
    if data and bad > LOG_BAD_BYTES_MAX * len(data):
        first = next(
            (i for i, ch in enumerate(text) if ch in ("\ufffd", "\0")),
            0,
        )
        line = text.count("\n", 0, first) + 1
        raise TextFileError(
            path,
            line,
            f"not a text console log ({bad} of {len(data)} bytes are NUL or not UTF-8); "
            "pass a serial console log or dmesg output",
        )
    return text

"""Reading files a user hands the harness, with errors that name file and line.

Scenario files and kconfig fragments must be UTF-8 text; console logs may
carry a few stray bytes from a serial line, but a binary file is not a log.
Only regular files of a bounded size are read: a FIFO would block the command
forever and /dev/zero would fill the memory before any check could refuse it.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

# A console log with more undecodable bytes than this share is not a log.
LOG_BAD_BYTES_MAX = 0.01
# Hand-written and harness-written inputs (scenarios, fragments, summary.json): the
# largest shipped one is a few KiB, a summary of thousands of items a few MiB.
TEXT_MAX = 64 << 20
# A serial console log: a whole run's is a few MiB, a long soak's tens of MiB.
LOG_MAX = 256 << 20


@dataclass(frozen=True)
class TextFileError(Exception):
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _size(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size} bytes"


def read_bytes(path: Path, what: str, limit: int = TEXT_MAX) -> bytes:
    """The whole of a regular file of at most ``limit`` bytes; anything else a TextFileError.

    Opened without blocking, so a FIFO is refused by its type instead of waiting for
    a writer; the size is checked while reading, as a device's st_size says nothing.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TextFileError(path, 1, f"cannot read: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise TextFileError(path, 1, f"is a {kind}, not a regular file: pass the {what} itself")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise TextFileError(
            path,
            1,
            f"larger than {_size(limit)}, the most the harness reads of a {what}: "
            "check that it is the right file",
        )
    return data


_KINDS = {
    stat.S_IFIFO: "FIFO (named pipe)",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFSOCK: "socket",
    stat.S_IFDIR: "directory",
}


def read_text(path: Path, what: str) -> str:
    """The file as UTF-8; a non-UTF-8 file is a TextFileError at the first bad byte."""
    data = read_bytes(path, what)
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


def read_json_object(path: Path, what: str, writer: str) -> dict:
    """A JSON file whose top level is an object; ``writer`` says what writes such a file."""
    try:
        data = json.loads(read_text(path, what))
    except json.JSONDecodeError as exc:
        raise TextFileError(
            path, exc.lineno, f"not valid JSON ({exc.msg}, column {exc.colno}): {writer}"
        ) from exc
    if not isinstance(data, dict):
        kind = _JSON_TYPES[type(data)]
        raise TextFileError(path, 1, f"a {what} is a JSON object, this is a JSON {kind}: {writer}")
    return data


_JSON_TYPES = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def read_log(path: Path) -> str:
    """A console log, tolerating stray bytes but refusing binary files."""
    data = read_bytes(path, "console log", LOG_MAX)
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

"""Source lines for the frames of a kernel report: 'at24_read+0x2b3/0x3e0' gets
'(drivers/misc/eeprom/at24.c:458)', as scripts/decode_stacktrace.sh would print it.

Binutils directly rather than scripts/faddr2line: faddr2line reads the whole
symbol table of vmlinux once per frame (seconds per report); here each object's
table is read once (``objdump -t``) and all of a report's addresses go to one
``addr2line`` per object and section. A frame that names a module (``[at24]``)
is looked up in that module's .ko, section-relative as addr2line takes a
relocatable object. Call-trace frames are return addresses: the line of the
call is that of the byte before (the RIP line is the faulting instruction itself).
"""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harness.splats import source_path

_FRAME = re.compile(
    r"(?P<rip>RIP: [0-9a-f]{4}:)?(?P<func>[A-Za-z_.$][\w.$]*)"
    r"\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)(?:\s+\[(?P<module>\w+)\])?"
)
# objdump -t: "ffffffff81234560 g     F .text  00000000000003e0 at24_read"
_SYMBOL = re.compile(r"^([0-9a-f]+)\s.{7}\s(\S+)\s+([0-9a-f]+)\s+(?:\.hidden\s+)?(\S+)$")


@dataclass(frozen=True)
class Objects:
    """The build a log came from: vmlinux (with debug info) and its modules' .ko files."""

    vmlinux: Path
    modules: dict[str, Path] = field(default_factory=dict)  # module name -> .ko

    def has_lines(self) -> bool:
        """Whether vmlinux carries line tables (a build without DEBUG_INFO gives none)."""
        return _has_lines(self.vmlinux)


def for_build(build_dir: str | Path, modules: dict[str, str]) -> Objects | None:
    """A build directory's vmlinux and the given modules (name -> .ko), if vmlinux carries
    line tables (a build without CONFIG_DEBUG_INFO has none: nothing to decode with)."""
    vmlinux = Path(build_dir) / "vmlinux"
    if not vmlinux.is_file():
        return None
    found = Objects(vmlinux, {name: Path(ko) for name, ko in modules.items()})
    return found if found.has_lines() else None


@dataclass(frozen=True)
class _Symbol:
    address: int
    size: int
    section: str


@functools.lru_cache(maxsize=8)
def _has_lines(path: Path) -> bool:
    out = subprocess.run(
        ["objdump", "-h", str(path)], capture_output=True, text=True, check=False
    ).stdout
    return ".debug_line" in out


@functools.lru_cache(maxsize=16)
def _symbols(path: Path) -> dict[str, list[_Symbol]]:
    """Function symbols by name (static functions of several files share one)."""
    out = subprocess.run(
        ["objdump", "-t", "--wide", str(path)], capture_output=True, text=True, check=False
    ).stdout
    table: dict[str, list[_Symbol]] = {}
    for line in out.splitlines():
        if (m := _SYMBOL.match(line)) and " F " in line:
            table.setdefault(m.group(4), []).append(
                _Symbol(int(m.group(1), 16), int(m.group(3), 16), m.group(2))
            )
    return table


@dataclass(frozen=True)
class _Frame:
    obj: Path
    section: str
    address: int  # absolute in vmlinux, section-relative in a .ko


def _locate(objects: Objects, func: str, off: int, size: int, module: str | None, rip: bool):
    obj = objects.modules.get(module) if module else objects.vmlinux
    if obj is None:
        return None
    # kallsyms' size runs to the next symbol (alignment padding included), the ELF size
    # does not; the offset must still fall inside the function, or this is another build
    fitting = [s for s in _symbols(obj).get(func, []) if s.size <= size and off <= s.size]
    exact = [s for s in fitting if s.size == size]
    if len(exact or fitting) != 1:  # unknown, or several static functions of that name
        return None
    symbol = (exact or fitting)[0]
    back = 0 if rip or off == 0 else 1
    section = "" if obj == objects.vmlinux else symbol.section
    return _Frame(obj, section, symbol.address + off - back)


def _addr2line(obj: Path, section: str, addresses: list[int]) -> dict[int, list[tuple[str, str]]]:
    """address -> [(function, file:line)], innermost inlined function first."""
    cmd = ["addr2line", "-e", str(obj), "-f", "-i", "-a"]
    if section:
        cmd += ["-j", section]
    out = subprocess.run(
        [*cmd, *(hex(a) for a in addresses)], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    found: dict[int, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    index = 0
    while index < len(out):
        line = out[index]
        if line.startswith("0x"):
            current = found.setdefault(int(line, 16), [])
            index += 1
            continue
        where = out[index + 1] if index + 1 < len(out) else "??:0"
        current.append((line, where))
        index += 2
    return found


def _place(where: str) -> str | None:
    """'/build/linux/drivers/x.c:12 (discriminator 3)' -> 'drivers/x.c:12'; None if unknown."""
    where = where.split(" (discriminator")[0]
    if where.startswith("??") or where.endswith(":0") or where.endswith(":?"):
        return None
    return source_path(where)


def decode(lines: Iterable[str], objects: Objects) -> list[str]:
    """``lines`` with the source line after every frame that resolves, and the functions
    inlined at that spot on their own lines before it; unresolved frames stay as they were."""
    lines = list(lines)
    wanted: dict[int, _Frame] = {}
    for number, line in enumerate(lines):
        if m := _FRAME.search(line):
            where = _locate(
                objects,
                m.group("func"),
                int(m.group("off"), 16),
                int(m.group("size"), 16),
                m.group("module"),
                bool(m.group("rip")),
            )
            if where is not None:
                wanted[number] = where
    batches: dict[tuple[Path, str], list[int]] = {}
    for frame in wanted.values():
        batches.setdefault((frame.obj, frame.section), []).append(frame.address)
    answers = {
        key: _addr2line(key[0], key[1], sorted(set(addresses)))
        for key, addresses in batches.items()
    }
    out: list[str] = []
    for number, line in enumerate(lines):
        frame = wanted.get(number)
        chain = answers[(frame.obj, frame.section)].get(frame.address, []) if frame else []
        places = [(func, _place(where)) for func, where in chain]
        if not places or places[-1][1] is None:
            out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        for func, place in places[:-1]:
            if place is not None:
                out.append(f"{indent}{func} ({place}) (inlined)")
        out.append(f"{line.rstrip()} ({places[-1][1]})")
    return out


def decode_text(text: str, objects: Objects) -> str:
    return "\n".join(decode(text.splitlines(), objects))

"""Kernel configuration: fragments in, verified .config out.

The tree's own ``merge_config.sh`` (on allnoconfig) and ``olddefconfig`` make
the .config; then every requested symbol is checked against it. Kconfig drops
an option silently when a dependency is unmet, so a failed check names the
symbol, asked vs got, the fragment that asked, and the ``depends on`` chain
(read from the tree's Kconfig files, values annotated like menuconfig does).

kconfiglib 14.1 (the latest release) cannot parse 6.12's Kconfig (it stops at
the ``modules`` keyword in kernel/module/Kconfig), hence the small scanner here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import paths, textfile

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


@dataclass(frozen=True)
class Request:
    """One line of one fragment: the value a symbol must end up with."""

    symbol: str  # without CONFIG_
    value: str  # 'y', 'm', 'n', or the literal for int/hex/string symbols
    fragment: Path
    line: int
    # '# harness: if-defined' above the line: required only where the tree's Kconfig
    # defines the symbol (a menu symbol older trees lack), not a typo to stop on
    if_defined: bool = False


IF_DEFINED = "# harness: if-defined"


@dataclass(frozen=True)
class FragmentError(Exception):
    fragment: Path
    line: int
    text: str
    problem: str = ""  # set when the file itself is unreadable (not UTF-8, missing)

    def __str__(self) -> str:
        if self.problem:
            return f"{self.fragment}:{self.line}: {self.problem}"
        return (
            f"{self.fragment}:{self.line}: cannot read {self.text!r}; a fragment line is "
            "CONFIG_FOO=y|m|<value> or '# CONFIG_FOO is not set'"
        )


def parse_fragment(text: str, path: Path) -> list[Request]:
    """Requests in one fragment, in file order. Comments and blank lines are skipped."""
    out = []
    marked = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if m := _UNSET.match(line):
            out.append(Request(m.group(1).removeprefix("CONFIG_"), "n", path, number, marked))
        elif m := _SET.match(line):
            value = m.group(2).strip()
            out.append(Request(m.group(1).removeprefix("CONFIG_"), value, path, number, marked))
        elif line == IF_DEFINED:
            marked = True
            continue
        elif line.startswith("#"):
            continue
        else:
            raise FragmentError(path, number, line)
        marked = False
    return out


def parse_dotconfig(text: str) -> dict[str, str]:
    """Symbol (without CONFIG_) -> value; unset symbols map to 'n'."""
    values = {}
    for line in text.splitlines():
        if m := _SET.match(line):
            values[m.group(1).removeprefix("CONFIG_")] = m.group(2)
        elif m := _UNSET.match(line):
            values[m.group(1).removeprefix("CONFIG_")] = "n"
    return values


@dataclass(frozen=True)
class FragmentSet:
    """The ordered fragment files one kernel is configured from."""

    files: tuple[Path, ...]

    @classmethod
    def for_scenarios(cls, names: list[str], extra: list[Path]) -> FragmentSet:
        """Base + debug + every fragment in kconfigs/ + scenario fragments + user fragments.

        Every shipped fragment goes in, not just the chosen scenarios' ones: one
        kernel per tree serves all built-in scenarios, so running one scenario
        or another selection reuses the cached build instead of a new config.
        """
        ordered: list[Path] = []
        for name in (*paths.BASE_FRAGMENTS, *paths.fragment_names(), *names):
            path = paths.fragment_path(name)
            if path not in ordered:
                ordered.append(path)
        ordered.extend(p.resolve() for p in extra)
        return cls(tuple(ordered))

    def requests(self) -> dict[str, Request]:
        """Last request per symbol wins, as in merge_config.sh."""
        merged: dict[str, Request] = {}
        for path in self.files:
            try:
                text = textfile.read_text(path, "kconfig fragment")
            except textfile.TextFileError as exc:
                raise FragmentError(path, exc.line, "", exc.message) from exc
            for request in parse_fragment(text, path):
                merged[request.symbol] = request
        return merged

    def digest(self) -> str:
        h = hashlib.sha256()
        for path in self.files:
            h.update(path.name.encode() + b"\0" + path.read_bytes())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class Mismatch:
    request: Request
    got: str
    depends: tuple[str, ...] = ()

    def explain(self) -> str:
        got = "unset" if self.got == "n" else self.got
        asked = "unset" if self.request.value == "n" else self.request.value
        text = (
            f"CONFIG_{self.request.symbol}: asked {asked}, got {got} "
            f"(from {self.request.fragment}:{self.request.line})"
        )
        if self.depends:
            text += "".join(f"\n    depends on {d}" for d in self.depends)
        else:
            text += "\n    no Kconfig entry found in this tree (symbol renamed or removed?)"
        return text


def _normal(value: str) -> str:
    return value.strip().strip('"')


def check(
    requests: dict[str, Request],
    dotconfig: dict[str, str],
    defined: Callable[[str], bool] | None = None,
) -> list[Mismatch]:
    """Every request whose value did not survive olddefconfig.

    An if-defined request counts only where ``defined`` says the tree has the
    symbol (default: the .config names it, set or not, as it does every symbol
    of the tree whose dependencies are met).
    """
    is_defined = defined or (lambda symbol: symbol in dotconfig)
    out = []
    for symbol, request in requests.items():
        got = dotconfig.get(symbol, "n")
        if _normal(got) != _normal(request.value):
            if request.if_defined and not is_defined(symbol):
                continue
            out.append(Mismatch(request, got))
    return out


def undefined_if_defined(requests: dict[str, Request], srctree: Path) -> list[Request]:
    """The if-defined requests whose symbol this tree's Kconfig does not define."""
    marked = {s: r for s, r in requests.items() if r.if_defined}
    entries = scan_kconfig(srctree, set(marked)) if marked else {}
    return [r for s, r in marked.items() if not entries.get(s)]


@dataclass(frozen=True)
class Prerequisite:
    """A symbol the tree makes a requested option depend on, which no fragment names.

    Trees differ in what an option needs (9P_FS depends on INET in some, not in
    others): the requested option is the requirement, and what it depends on
    there is enabled for it, and said so.
    """

    symbol: str
    needed_by: Request
    where: str  # the Kconfig entry with the dependency, 'fs/9p/Kconfig:2'

    def line(self) -> str:
        return f"CONFIG_{self.symbol}=y"

    def explain(self) -> str:
        return (
            f"{self.line()}: CONFIG_{self.needed_by.symbol} "
            f"(from {self.needed_by.fragment}:{self.needed_by.line}) depends on it in this tree "
            f"[{self.where}]"
        )


_PLAIN = re.compile(r"^[A-Z0-9_]+$")


def prerequisites(
    mismatches: list[Mismatch],
    srctree: Path,
    dotconfig: dict[str, str],
    requests: dict[str, Request],
) -> list[Prerequisite]:
    """Unset symbols a dropped y/m request depends on by plain conjunction.

    Only ``depends on A && B`` terms that are a bare symbol the tree defines and
    no fragment asks to be unset: anything with ``||``, ``!`` or a comparison is
    left to the config check's explanation.
    """
    wanted = [m for m in mismatches if m.request.value in ("y", "m") and m.got == "n"]
    entries = scan_kconfig(srctree, {m.request.symbol for m in wanted})
    candidates: dict[str, Prerequisite] = {}
    for mismatch in wanted:
        for entry in entries.get(mismatch.request.symbol, []):
            for condition in entry.conditions:
                for term in (t.strip() for t in condition.split("&&")):
                    if not _PLAIN.match(term) or dotconfig.get(term, "n") != "n":
                        continue
                    if term in requests or term in candidates:
                        continue
                    candidates[term] = Prerequisite(term, mismatch.request, entry.where)
    defined = scan_kconfig(srctree, set(candidates)) if candidates else {}
    return [p for s, p in candidates.items() if defined.get(s)]


# --- Kconfig dependency scanner ---------------------------------------------

_ENTRY = re.compile(r"^\s*(config|menuconfig)\s+([A-Za-z0-9_]+)\s*$")
_BLOCK_OPEN = re.compile(r"^\s*(menu|choice|if)\b\s*(.*)$")
_BLOCK_CLOSE = re.compile(r"^\s*(endmenu|endchoice|endif)\b")
_DEPENDS = re.compile(r"^\s*depends\s+on\s+(.*)$")
_SOURCE = re.compile(r'^\s*(?:o?r?source|osource|rsource|orsource)\s+"([^"]+)"')
_HELP = re.compile(r"^\s*(help|---help---)\s*$")
_OTHER_ENTRY = re.compile(r"^\s*(comment|mainmenu)\b")
_MACRO = re.compile(r"^\s*[A-Za-z0-9_-]+\s*[:+]?=")
_SYMBOL = re.compile(r"\b([A-Z0-9_]+[A-Z_][A-Z0-9_]*|[A-Z][A-Z0-9_]*)\b")


@dataclass
class _Block:
    kind: str
    conditions: list[str] = field(default_factory=list)


@dataclass
class KconfigEntry:
    symbol: str
    where: str
    conditions: list[str]


def _logical_lines(text: str):
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""


def _expand(path: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), path)


def scan_kconfig(
    srctree: Path, wanted: set[str], arch: str = "x86"
) -> dict[str, list[KconfigEntry]]:
    """Find the entries of ``wanted`` symbols with all conditions that guard them.

    Conditions are the entry's own ``depends on`` lines plus those of every
    enclosing ``if``, ``menu`` and ``choice`` block, as Kconfig itself combines them.
    """
    variables = {"SRCARCH": arch, "ARCH": arch, "HEADER_ARCH": arch}
    found: dict[str, list[KconfigEntry]] = {s: [] for s in wanted}
    stack: list[_Block] = []

    def walk(rel: str) -> None:
        file = srctree / rel
        try:
            text = file.read_text(errors="replace")
        except OSError:
            return
        entry: KconfigEntry | None = None
        target: list[str] | None = None  # where a following 'depends on' lands
        help_indent: int | None = None
        in_help = False
        for number, line in _logical_lines(text):
            if in_help:
                stripped = line.strip()
                indent = len(line) - len(line.lstrip())
                if not stripped:
                    continue
                if help_indent is None:
                    help_indent = indent
                if indent >= help_indent and help_indent > 0:
                    continue
                in_help = False
            code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
            if not code.strip():
                continue
            if _HELP.match(code):
                in_help, help_indent = True, None
                continue
            if m := _ENTRY.match(code):
                symbol = m.group(2)
                conditions = [c for block in stack for c in block.conditions]
                entry = KconfigEntry(symbol, f"{rel}:{number}", conditions)
                target = entry.conditions
                if symbol in found:
                    found[symbol].append(entry)
                continue
            if _MACRO.match(code):
                continue
            if m := _SOURCE.match(code):
                walk(_expand(m.group(1), variables))
                entry, target = None, None
                continue
            if m := _BLOCK_OPEN.match(code):
                block = _Block(m.group(1))
                if m.group(1) == "if":
                    block.conditions.append(" ".join(m.group(2).split()))
                stack.append(block)
                entry, target = None, block.conditions
                continue
            if _BLOCK_CLOSE.match(code):
                if stack:
                    stack.pop()
                entry, target = None, None
                continue
            if _OTHER_ENTRY.match(code):
                entry, target = None, None
                continue
            if (m := _DEPENDS.match(code)) and target is not None:
                target.append(" ".join(m.group(1).split()))

    walk("Kconfig")
    return found


def annotate(expression: str, values: dict[str, str]) -> str:
    """'A && !B' -> 'A [=y] && !B [=n]', as menuconfig shows dependencies."""

    def one(m: re.Match) -> str:
        name = m.group(1)
        if name in ("y", "m", "n") or name.isdigit():
            return name
        return f"{name} [={values.get(name, 'n')}]"

    return _SYMBOL.sub(one, expression)


def explain(mismatches: list[Mismatch], srctree: Path, dotconfig: dict[str, str]) -> list[Mismatch]:
    """Attach each mismatched symbol's annotated ``depends on`` chain."""
    entries = scan_kconfig(srctree, {m.request.symbol for m in mismatches})
    out = []
    for mismatch in mismatches:
        depends = []
        for entry in entries.get(mismatch.request.symbol, []):
            chain = " && ".join(f"({c})" if "||" in c else c for c in entry.conditions)
            depends.append(f"{annotate(chain, dotconfig) or '(nothing)'}   [{entry.where}]")
        out.append(Mismatch(mismatch.request, mismatch.got, tuple(depends)))
    return out

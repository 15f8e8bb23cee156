"""Typed access to a YAML document that remembers where every value came from.

Scenario files are written by hand; an error must name file, line and field.
PyYAML's composed node tree keeps line numbers, so validation walks nodes
instead of the plain dicts ``yaml.safe_load`` would give.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class SchemaError:
    """One problem in one file, phrased so the author knows what to change."""

    path: Path
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class SchemaErrors(Exception):
    """All problems found in one or more files."""

    def __init__(self, errors: list[SchemaError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass
class Node:
    """A YAML node with its dotted field path, for error messages."""

    raw: yaml.Node
    field: str
    ctx: Reader

    @property
    def line(self) -> int:
        return self.raw.start_mark.line + 1

    def error(self, message: str) -> None:
        self.ctx.errors.append(SchemaError(self.ctx.path, self.line, self.field, message))


@dataclass
class Reader:
    """Collects errors while typed getters walk a composed YAML tree."""

    path: Path
    errors: list[SchemaError] = field(default_factory=list)

    def load(self, text: str) -> Node | None:
        try:
            root = yaml.compose(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark else 1
            problem = getattr(exc, "problem", None) or str(exc)
            self.errors.append(SchemaError(self.path, line, "", f"not valid YAML: {problem}"))
            return None
        if root is None:
            self.errors.append(SchemaError(self.path, 1, "", "the file is empty"))
            return None
        return Node(root, "", self)


def child_field(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def mapping(node: Node, allowed: dict[str, bool]) -> dict[str, Node]:
    """Return the mapping's children; ``allowed`` maps each key to required-ness.

    Unknown keys are errors (a typo must not silently drop a setting).
    """
    if not isinstance(node.raw, yaml.MappingNode):
        node.error(f"expected a mapping with keys {', '.join(allowed)}")
        return {}
    out: dict[str, Node] = {}
    for key_node, value_node in node.raw.value:
        key = key_node.value
        child = Node(value_node, child_field(node.field, key), node.ctx)
        if key not in allowed:
            Node(key_node, child_field(node.field, key), node.ctx).error(
                f"unknown key; allowed here: {', '.join(sorted(allowed))}"
            )
            continue
        if key in out:
            child.error("given twice")
        out[key] = child
    for key, required in allowed.items():
        if required and key not in out:
            node.error(f"missing required key '{key}'")
    return out


def sequence(node: Node) -> list[Node]:
    if isinstance(node.raw, yaml.SequenceNode):
        return [Node(n, child_field(node.field, i), node.ctx) for i, n in enumerate(node.raw.value)]
    node.error("expected a list")
    return []


def string_list(node: Node) -> list[str]:
    """A list of strings; a single string is accepted as a one-element list."""
    if isinstance(node.raw, yaml.ScalarNode):
        return [scalar_str(node)]
    return [scalar_str(item) for item in sequence(node)]


def _scalar(node: Node) -> Any:
    if not isinstance(node.raw, yaml.ScalarNode):
        node.error("expected a single value, not a list or mapping")
        return None
    return yaml.safe_load(yaml.serialize(node.raw))


def scalar_str(node: Node) -> str:
    value = _scalar(node)
    if value is None:
        return ""
    return str(value)


# The largest number any field takes unless it names its own bound: more than any count,
# size or seed here needs, and what a C int on the guest's side still holds.
INT_MAX = 2**31 - 1


def scalar_int(node: Node, minimum: int = 0, maximum: int = INT_MAX) -> int:
    value = _scalar(node)
    if isinstance(value, bool) or not isinstance(value, int):
        node.error(f"expected a whole number, got {node.raw.value!r}")
        return minimum
    if not minimum <= value <= maximum:
        node.error(f"must be between {minimum} and {maximum}")
        return minimum
    return value


def scalar_bool(node: Node) -> bool:
    value = _scalar(node)
    if not isinstance(value, bool):
        node.error(f"expected true or false, got {node.raw.value!r}")
        return False
    return value


def choice(node: Node, allowed: tuple[str, ...]) -> str:
    value = scalar_str(node)
    if value not in allowed:
        node.error(f"{value!r} is not allowed; use one of: {', '.join(allowed)}")
    return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")


def parse_duration(text: str) -> float | None:
    """'500ms', '2s', '1.5m' or a bare number of seconds -> seconds."""
    match = _DURATION.match(text)
    if not match:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]
    return float(match.group(1)) * scale


# The longest any duration of a scenario may be: a scenario's whole timeout under TCG is
# minutes (the longest shipped one 20m), and a run of one side ends after an hour by default.
DURATION_MAX = 6 * 3600.0


def duration(node: Node, positive: bool = False) -> float:
    """Seconds, at most DURATION_MAX; ``positive`` for a bound, which 0 could never meet."""
    value = parse_duration(scalar_str(node))
    if value is None:
        node.error(f"expected a duration like 500ms, 2s or 1m, got {node.raw.value!r}")
        return 0.0
    if positive and value <= 0:
        node.error("must be more than 0: it bounds how long something may take (e.g. 5s)")
        return 0.0
    if value > DURATION_MAX:
        node.error(
            f"{node.raw.value!r} is more than {DURATION_MAX / 60:g}m, the most a scenario "
            "may wait for anything: give a shorter duration"
        )
        return 0.0
    return value


_SIZE = re.compile(r"^\s*(\d+)\s*(KiB|MiB|K|M|k)?\s*$")


def size(node: Node, minimum: int = 1, maximum: int | None = None) -> int:
    """A byte count: 4096, 64KiB, 1MiB (K and M are binary units too)."""
    text = scalar_str(node)
    match = _SIZE.match(text)
    if not match:
        node.error(f"expected a size like 4096, 64KiB or 1MiB, got {node.raw.value!r}")
        return minimum
    unit = (match.group(2) or "").lower()[:1]
    value = int(match.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit]
    if value < minimum or (maximum is not None and value > maximum):
        node.error(f"must be between {minimum} and {maximum} bytes")
        return minimum
    return value


def optional(fields: dict[str, Node], key: str, read, default):
    """``read`` of an optional key's node, or ``default`` when the key is absent."""
    return read(fields[key]) if key in fields else default

"""What the host and the guest say to each other: the plan of a boot and its items.

One set of dataclasses for both sides: the host builds them from a scenario
file (harness/scenario.py checks every field once, with file and line) and
writes them as JSON; the guest reads the JSON back into the same classes
and uses attributes, never string keys. Each fixture type's spec is a
subclass of FixtureSpec in that type's guest module (guest/fixtures/), so a
new type adds its fields there, not here. Standard library only.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FixtureSpec:
    """What every fixture has; a type's module subclasses this with its own fields."""

    name: str
    type: str
    # fixtures this one's kernel device uses (an EEPROM's wp GPIO chip): their removal
    # affects this fixture's workers as its own would
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    type: str
    fixture: str | None
    bank: int
    lines: tuple[int, ...]
    path: str | None
    threads: int
    share_fd: bool
    on_error: str
    min_ops: int
    interval: float
    hold_cycles: int
    hold: bool
    verify: bool
    whole_file: bool = False  # read-file without hold: each op reads 0..EOF, like `cat`
    block_size: int = 128 * 1024  # read-file: bytes asked per read() call (what `cat` asks)
    max_ops: int = 0  # per thread and cycle; 0 = until the cycle ends
    # per thread, ops tried (failed ones too) after the cycle's first removal of its fixture or
    # of one its fixture uses (of any fixture, for a worker without one)
    min_ops_after_removal: int = 0


@dataclass(frozen=True)
class ActionSpec:
    do: str
    fixture: str | None
    at: float | None
    after_worker: str | None
    after_ops: int
    bank: int
    line: int | None
    pull: str
    repeat: int
    interval: float
    within: float | None
    duration: float
    what: str
    level: str | None
    jitter: float
    point: str = ""  # unplug: "", halfway, bytes, transfers
    point_count: int = 0  # bytes/transfers after the action triggers
    via: str = ""  # provoke: "lkdtm" or the helper module "splat_selftest"


@dataclass(frozen=True)
class ExpectSpec:
    no_splats: bool
    worker_errnos: tuple[str, ...]
    workers_must_fail: bool
    workers_exit_within: float
    action_within: float
    require_midread: bool
    max_slab_growth_kb: int | None
    max_fd_growth: int | None
    max_identities: int | None


@dataclass(frozen=True)
class ScenarioSpec:
    """What the guest needs of a scenario (the host's Scenario adds where it came from)."""

    name: str
    fixtures: tuple[FixtureSpec, ...]
    workers: tuple[WorkerSpec, ...]
    actions: tuple[ActionSpec, ...]
    expect: ExpectSpec
    cycles: int
    timeout: float


@dataclass(frozen=True)
class PlanItem:
    """One repetition of one scenario, as the guest runs it."""

    id: str
    scenario: ScenarioSpec
    repetition: int
    seed: int


@dataclass(frozen=True)
class Plan:
    """One boot's work: where results go, the helper modules built, the items in order."""

    result_dir: str
    modules: dict[str, str]
    items: tuple[PlanItem, ...]
    shell: str = ""  # "before" (the first removal) or "after" (the cycles): a console shell


@dataclass
class ItemReport:
    """What the guest says of one item (guest/<id>.json in the boot's results share).

    ``workers`` (per worker: ops, errors, bytes, proof of work) and ``actions``
    (per action: latency, the mid-read proof, the unplug point) are records
    whose keys depend on the worker or action type, so they stay JSON objects.
    """

    id: str
    scenario: str
    repetition: int
    seed: int
    cycles_done: int
    cycles: int
    error: str | None
    violations: list[str]
    workers: dict[str, dict]
    actions: list[dict]
    needs_reboot: bool
    taint_before: int | None = None
    taint_after: int | None = None
    taint_gained: str = ""
    slab_kb_cycle0: int | None = None
    slab_kb_end: int | None = None
    slab_growth_kb: int | None = None
    identities: dict[str, list[str]] = field(default_factory=dict)
    fds_before: int | None = None
    fds_after: int | None = None
    duration_s: float = 0.0


def to_json(spec) -> dict:
    """The JSON object of a spec (a host Scenario gives only its ScenarioSpec fields)."""
    return _plain(spec)


def _plain(value):
    if dataclasses.is_dataclass(value):
        cls = ScenarioSpec if isinstance(value, ScenarioSpec) else type(value)
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(cls)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


FixtureDecoder = Callable[[dict], FixtureSpec]


def decode(cls: type, data, fixture: FixtureDecoder | None = None):
    """``data`` (parsed JSON) as an instance of dataclass ``cls``; fixture specs through
    ``fixture`` (the guest's registry picks each type's class). Unknown keys are an
    error: the two sides must agree on every field."""
    if cls is FixtureSpec:
        return fixture(data) if fixture is not None else _decode_fields(cls, data, fixture)
    return _decode_fields(cls, data, fixture)


def _decode_fields(cls: type, data: dict, fixture: FixtureDecoder | None):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(sorted(unknown))}")
    return cls(**{k: _value(hints[k], v, fixture) for k, v in data.items()})


def _value(hint, value, fixture: FixtureDecoder | None):
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _value(inner, value, fixture)
    if origin is tuple:
        (inner, *_) = typing.get_args(hint)
        return tuple(_value(inner, v, fixture) for v in value)
    if dataclasses.is_dataclass(hint):
        return decode(hint, value, fixture)
    return value

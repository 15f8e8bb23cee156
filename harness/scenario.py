"""Scenario files: the YAML a kernel developer writes, checked and turned into records.

A scenario describes fixtures (emulated providers), workers (concurrent
consumers), an action timeline (remove/unbind/re-create the provider while the
workers run) and expectations. ``load_scenario`` reports every problem with
file, line and field; the records it returns are what the guest runner gets
(as JSON, so the guest needs only the standard library).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from guest import protocol
from guest import workers as guest_workers
from guest.protocol import ActionSpec, ExpectSpec, FixtureSpec, ScenarioSpec, WorkerSpec
from guest.workers.base import Worker as BaseWorker
from harness import fixtures as fixture_types
from harness import kapi, paths, textfile
from harness.fixtures.base import NAME
from harness.yamlnodes import (
    Node,
    Reader,
    SchemaError,
    SchemaErrors,
    choice,
    duration,
    mapping,
    optional,
    scalar_bool,
    scalar_int,
    scalar_str,
    sequence,
    size,
    string_list,
)

# The fixture types, one module each (harness/fixtures/); these tables are read from them.
FIXTURE_TYPES = tuple(fixture_types.types())
FIXTURE_TEMPLATES: dict[str, dict[str, str]] = {
    kind: module.TEMPLATES for kind, module in fixture_types.types().items()
}
# Where each fixture type's kernel devices appear. A worker path not built on a path
# template must lie there (its fixture's; any fixture type's for a worker without one), so
# that it reaches a provider under test: /dev/zero would meet every proof of work.
DEVICE_AREAS = {kind: module.DEVICE_AREAS for kind, module in fixture_types.types().items()}
USB_FIXTURE_TYPES = tuple(kind for kind, module in fixture_types.types().items() if module.USB)
CHIP_MODEL_TYPES = tuple(k for k, module in fixture_types.types().items() if module.CHIP_MODEL)


def fixture_fragments(fixture: FixtureSpec) -> tuple[str, ...]:
    """Fragments the guest needs for this fixture (gpio-sim, or the USB gadget + adapter)."""
    module = fixture_types.get(fixture.type)
    return module.fragments(fixture) if module else ()


def fixture_modules(fixture: FixtureSpec) -> tuple[str, ...]:
    """The helper modules (guest/modules) the guest loads for this fixture."""
    module = fixture_types.get(fixture.type)
    return module.modules(fixture) if module else ()


# Upper bounds of the counts that multiply a run's length (cycles per item, items per
# scenario); the shipped scenarios use at most 40 cycles and 1 repetition.
CYCLES_MAX = 10_000
REPEAT_MAX = 1_000

WORKER_TYPES = guest_workers.types()  # one module each in guest/workers/
ACTION_TYPES = (
    "remove",
    "create",
    "unbind",
    "bind",
    "set-pull",
    "toggle-pull",
    "sleep",
    "wait-workers",
    "wait-ops",
    "provoke",
    "unplug",
    "replug",
)
# LKDTM crash types the harness's own detector self-tests use (provoke-crash/DIRECT).
PROVOKE = (
    "WARNING",
    "WARNING_MESSAGE",
    "BUG",
    "EXCEPTION",
    "ACCESS_NULL",
    "PANIC",
    "READ_AFTER_FREE",
    "WRITE_AFTER_FREE",
    "SLAB_FREE_DOUBLE",
    "SLAB_LINEAR_OVERFLOW",
    "HUNG_TASK",
    "SOFTLOCKUP",
    "SPINLOCKUP",
    "REFCOUNT_DEC_ZERO",
    "REFCOUNT_INC_OVERFLOW",
    "CORRUPT_LIST_ADD",
    "CORRUPT_LIST_DEL",
    "ARRAY_BOUNDS",
)
# Reports LKDTM has no trigger for, from the harness's own helper module
# (guest/modules/splat_selftest, its debugfs trigger); each leaves the kernel running.
SELFTEST_PROVOKE = ("abba", "atomic-sleep", "odebug")
# Where an unbind/bind action cuts: the provider's own driver by default, or a
# level of a USB adapter fixture's stack (client chip, bus adapter, USB interface).
UNBIND_LEVELS = ("driver", "client", "adapter", "spi-device", "controller", "usb-interface")
ON_ERROR = ("stop", "continue", "reopen")
# guest/modules/revocable_test: what its provider file takes as a revoke, what a revoked read says
# What `cat` (coreutils' io_blksize) asks per read(): the size read-file uses unless told.
CAT_BLOCK = 128 * 1024
BLOCK_MAX = 16 * 1024 * 1024
ERRNO_NAMES = (
    "ENODEV",
    "EIO",
    "ENXIO",
    "ENOENT",
    "EBADF",
    "EINVAL",
    "EPROTO",
    "ESHUTDOWN",
    "EPIPE",
    "ETIMEDOUT",
    "EBUSY",
    "EAGAIN",
    "EINTR",
    "EFAULT",
    "EPERM",
    "ENOTTY",
    "EREMOTEIO",
    "ECONNRESET",
    "EOPNOTSUPP",
)


# The records this module checks once, with file and line, are the ones the guest gets
# (guest/protocol.py; each fixture type's spec in its guest module).


@dataclass(frozen=True)
class Scenario(ScenarioSpec):
    """A scenario file: what the guest runs (ScenarioSpec) and what the host needs besides."""

    description: str = ""
    path: str = ""
    kconfig: tuple[str, ...] = ()
    cmdline: tuple[str, ...] = ()
    repeat: int = 1
    seed: int = 0
    covers: tuple[str, ...] = ()  # kernel source paths this scenario exercises (dir/ or file)
    needs: tuple[str, ...] = ()  # kernel APIs (harness/kapi.py) the tree must have, else skipped

    @property
    def helper_modules(self) -> tuple[str, ...]:
        provokers = [a.via for a in self.actions if a.via == "splat_selftest"]
        fixtures = [m for f in self.fixtures for m in fixture_modules(f)]
        return tuple(dict.fromkeys([*fixtures, *provokers]))

    def touched_by(self, files: list[str]) -> list[str]:
        """The ``files`` (paths relative to the tree) that lie in what this scenario covers."""
        return [f for f in files if any(_path_within(f, c) for c in self.covers)]

    @property
    def summary(self) -> str:
        """First sentence of the description, for listings."""
        first = self.description.strip().split("\n")[0]
        return first.split(". ")[0].rstrip(".")

    def to_json(self) -> dict:
        """The guest's part, as the boot's plan carries it."""
        return protocol.to_json(self)


_TOP = {
    "name": True,
    "description": True,
    "kconfig": False,
    "cmdline": False,
    "fixtures": True,
    "workers": False,
    "actions": False,
    "expect": False,
    "cycles": False,
    "timeout": False,
    "repeat": False,
    "seed": False,
    "covers": False,
    "needs": False,
}
_WORKER = {
    "name": True,
    "type": True,
    "fixture": False,
    "bank": False,
    "lines": False,
    "path": False,
    "threads": False,
    "share_fd": False,
    "on_error": False,
    "min_ops": False,
    "max_ops": False,
    "interval": False,
    "hold_cycles": False,
    "hold": False,
    "verify": False,
    "whole_file": False,
    "block_size": False,
    "min_ops_after_removal": False,
}
_ACTION = {
    "do": True,
    "point": False,
    "fixture": False,
    "at": False,
    "after": False,
    "bank": False,
    "line": False,
    "pull": False,
    "repeat": False,
    "interval": False,
    "within": False,
    "duration": False,
    "what": False,
    "level": False,
    "jitter": False,
}
_AFTER = {"worker": True, "ops": True}
_EXPECT = {
    "no_splats": False,
    "worker_errnos": False,
    "workers_must_fail": False,
    "workers_exit_within": False,
    "action_within": False,
    "require_midread": False,
    "max_slab_growth_kb": False,
    "max_fd_growth": False,
    "max_identities": False,
}
_NEEDS_FIXTURE_ACTIONS = (
    "remove",
    "create",
    "unbind",
    "bind",
    "set-pull",
    "toggle-pull",
    "unplug",
    "replug",
)
_POINT_COUNTS = {"bytes": False, "transfers": False}


def _bound(node: Node) -> float:
    """A duration something must end within: more than 0."""
    return duration(node, positive=True)


def _fixture(name: str, node: Node, earlier: dict[str, FixtureSpec]) -> FixtureSpec:
    """One fixtures: entry, checked by its type's module."""
    kind_node = _type_node(node)
    if kind_node is None:
        node.error(f"a fixture needs 'type'; one of: {', '.join(FIXTURE_TYPES)}")
        return FixtureSpec(name=name, type="")
    kind = choice(kind_node, FIXTURE_TYPES)
    module = fixture_types.get(kind)
    if module is None:
        return FixtureSpec(name=name, type=kind)
    return module.parse(name, mapping(node, module.KEYS), node, earlier)


def _type_node(node: Node) -> Node | None:
    """The fixture's 'type' value: it decides which other keys are allowed."""
    if isinstance(node.raw, yaml.MappingNode):
        for key_node, value_node in node.raw.value:
            if key_node.value == "type":
                return Node(value_node, f"{node.field}.type", node.ctx)
    return None


def _fixture_ref(fields: dict[str, Node], fixtures: dict[str, FixtureSpec]) -> str | None:
    """The optional 'fixture' key, which must name a defined fixture."""
    fixture = optional(fields, "fixture", scalar_str, None)
    if fixture is not None and fixture not in fixtures:
        defined = ", ".join(fixtures) or "none"
        fields["fixture"].error(f"no fixture {fixture!r}; defined: {defined}")
    return fixture


def _worker(node: Node, fixtures: dict[str, FixtureSpec]) -> WorkerSpec | None:
    w = mapping(node, _WORKER)
    if "name" not in w or "type" not in w:
        return None
    kind = choice(w["type"], WORKER_TYPES)
    fixture = _fixture_ref(w, fixtures)
    # an unknown type (choice() said so, with file and line) is checked as any worker
    worker_class = _worker_class(kind) if kind in WORKER_TYPES else BaseWorker
    if worker_class.needs_fixture and fixture is None:
        node.error(f"a {kind} worker needs 'fixture'")
    path = optional(w, "path", scalar_str, None)
    if worker_class.needs_path and path is None:
        node.error(f"a {kind} worker needs 'path' (e.g. /sys/bus/nvmem/devices/*/nvmem)")
    if fixture in fixtures:
        _check_fixture_type(w["fixture"], kind, worker_class, fixtures[fixture].type)
    whole_file = optional(w, "whole_file", scalar_bool, False)
    if whole_file and (
        fixture is None or (fixture in fixtures and fixtures[fixture].type not in CHIP_MODEL_TYPES)
    ):
        w["whole_file"].error(
            "a whole-file read must end at the chip's size: it needs a "
            f"{'/'.join(CHIP_MODEL_TYPES)} fixture"
        )
    if worker_class.path_or_fixture and path is None and fixture is None:
        node.error(f"a worker of type {kind} needs 'path' or 'fixture'")
    if path is not None:
        _check_path(w["path"], path, fixture, fixtures)
    threads = optional(w, "threads", lambda n: scalar_int(n, 1, 64), 1)
    min_ops = optional(w, "min_ops", scalar_int, 1)
    max_ops = optional(w, "max_ops", scalar_int, 0)
    if max_ops and max_ops * threads < min_ops:
        w["max_ops"].error("max_ops (per thread) x threads is below min_ops: it could never pass")
    bank = optional(w, "bank", scalar_int, 0)
    lines = tuple(optional(w, "lines", lambda n: [scalar_int(i) for i in sequence(n)], [0]))
    if fixture in fixtures and getattr(fixtures[fixture], "banks", ()):
        banks = fixtures[fixture].banks
        if bank >= len(banks):
            w["bank"].error(f"fixture {fixture!r} has {len(banks)} bank(s)")
        elif any(line >= banks[bank].lines for line in lines):
            w["lines"].error(f"bank {bank} of {fixture!r} has lines 0..{banks[bank].lines - 1}")
    return WorkerSpec(
        name=scalar_str(w["name"]),
        type=kind,
        fixture=fixture,
        bank=bank,
        lines=lines,
        path=path,
        threads=threads,
        share_fd=optional(w, "share_fd", scalar_bool, False),
        on_error=optional(w, "on_error", lambda n: choice(n, ON_ERROR), "stop"),
        min_ops=min_ops,
        interval=optional(w, "interval", duration, 0.0),
        hold_cycles=optional(w, "hold_cycles", scalar_int, 0),
        hold=optional(w, "hold", scalar_bool, True),
        verify=optional(w, "verify", scalar_bool, False),
        whole_file=whole_file,
        block_size=optional(w, "block_size", lambda n: size(n, 1, BLOCK_MAX), CAT_BLOCK),
        max_ops=max_ops,
        min_ops_after_removal=optional(w, "min_ops_after_removal", scalar_int, 0),
    )


_TEMPLATE = re.compile(r"\{([^{}]*)\}")


def _templates_of(name: str, fixture: FixtureSpec) -> str:
    return ", ".join(f"{{{name}.{key}}}" for key in FIXTURE_TEMPLATES[fixture.type])


def _check_fixture_type(node: Node, kind: str, worker_class: type, fixture_type: str) -> None:
    """The worker's class says which fixtures it can work on."""
    allowed = worker_class.fixture_types
    if allowed and fixture_type not in allowed:
        node.error(f"a {kind} worker works on a {'/'.join(allowed)} fixture, not {fixture_type}")
    if worker_class.needs_chip_model and fixture_type not in CHIP_MODEL_TYPES:
        node.error(f"{kind} checks the chip model: it needs a {'/'.join(CHIP_MODEL_TYPES)} fixture")


def _check_path(
    node: Node, path: str, fixture: str | None, fixtures: dict[str, FixtureSpec]
) -> None:
    """A worker path reaches the provider under test: its fixture's templates or devices."""
    if ".." in path.split("/"):
        node.error(f"{path!r}: '..' leaves the device area; name the provider's file itself")
        return
    if "{" in _TEMPLATE.sub("", path) or "}" in _TEMPLATE.sub("", path):
        node.error(f"{path!r}: a brace without its pair; a template is {{fixture.value}}")
        return
    for match in _TEMPLATE.finditer(path):
        name, _, key = match.group(1).partition(".")
        target = fixtures.get(name)
        if target is None:
            node.error(f"{match.group()}: no fixture {name!r}; defined: {', '.join(fixtures)}")
        elif target.type not in FIXTURE_TEMPLATES:
            continue  # its type is reported where it is defined
        elif key not in FIXTURE_TEMPLATES[target.type]:
            node.error(
                f"{match.group()}: a {target.type} fixture has no template value {key!r}; "
                f"{name} gives {_templates_of(name, target)}"
            )
        elif fixture is not None and name != fixture and name not in fixtures[fixture].depends_on:
            node.error(
                f"{match.group()} is fixture {name}'s, the worker's is {fixture}: set "
                f"fixture: {name}, so its removal is counted for this worker"
            )
    if first := _TEMPLATE.match(path):
        name, _, key = first.group(1).partition(".")
        kind = fixtures[name].type if name in fixtures else ""
        if FIXTURE_TEMPLATES.get(kind, {}).get(key) == NAME:
            node.error(
                f"{first.group()} is a device's name, not a path: write the path it is part "
                f"of (/sys/bus/.../{first.group()}/...), or start with a path template"
            )
        return
    kinds = [fixtures[fixture].type] if fixture in fixtures else list(DEVICE_AREAS)
    areas = tuple(a for kind in kinds for a in DEVICE_AREAS.get(kind, ()))
    if kinds[0] in DEVICE_AREAS and not path.startswith(areas):
        use = _templates_of(fixture, fixtures[fixture]) if fixture in fixtures else ""
        where = f"{fixture}'s devices" if fixture in fixtures else "the fixtures' devices"
        inside = f" or a path under {', '.join(areas)}" if areas else ""
        node.error(
            f"{path!r} is outside {where}: a worker must reach the provider under test; "
            f"use {use or 'a fixture template'}{inside}"
        )


def _worker_class(kind: str) -> type[BaseWorker]:
    """The guest's class of a worker type: what its spec needs (fixture, path, lines)."""
    return guest_workers.worker_class(kind)


def _check_line_requests(node: Node, worker: WorkerSpec, earlier) -> None:
    """A GPIO line can be requested once; a second request fails with EBUSY at run time."""
    if worker.type not in WORKER_TYPES or not _worker_class(worker.type).splits_lines:
        return
    if not worker.share_fd and worker.threads > len(worker.lines):
        node.error(
            f"{worker.threads} threads with their own requests need {worker.threads} lines, "
            f"got {len(worker.lines)}; add lines or set share_fd: true"
        )
    for other in earlier:
        requests = other.type in WORKER_TYPES and _worker_class(other.type).splits_lines
        if not requests or (other.fixture, other.bank) != (worker.fixture, worker.bank):
            continue
        if clash := sorted(set(worker.lines) & set(other.lines)):
            node.error(
                f"line(s) {clash} of {worker.fixture} bank {worker.bank} are already requested "
                f"by worker {other.name!r}; a line can be requested once (EBUSY)"
            )


def _action(
    node: Node, fixtures: dict[str, FixtureSpec], workers: dict[str, WorkerSpec]
) -> ActionSpec | None:
    a = mapping(node, _ACTION)
    if "do" not in a:
        return None
    do = choice(a["do"], ACTION_TYPES)
    fixture = _fixture_ref(a, fixtures)
    if do in _NEEDS_FIXTURE_ACTIONS and fixture is None:
        node.error(f"action '{do}' needs 'fixture'")
    after_worker, after_ops = None, 0
    if "after" in a:
        after = mapping(a["after"], _AFTER)
        if "worker" in after:
            after_worker = scalar_str(after["worker"])
            if after_worker not in workers:
                after["worker"].error(
                    f"no worker {after_worker!r}; defined: {', '.join(workers) or 'none'}"
                )
        after_ops = optional(after, "ops", lambda n: scalar_int(n, 1), 1)
    line = optional(a, "line", scalar_int, None)
    if do == "provoke" and "what" not in a:
        node.error(
            f"action 'provoke' needs 'what'; one of: {', '.join(PROVOKE + SELFTEST_PROVOKE)}"
        )
    if do in ("set-pull", "toggle-pull") and line is None:
        node.error(f"action '{do}' needs 'line'")
    if do in ("unplug", "replug") and fixture in fixtures:
        if fixtures[fixture].type not in USB_FIXTURE_TYPES:
            a["fixture"].error(
                f"action '{do}' is for USB adapter fixtures ({', '.join(USB_FIXTURE_TYPES)}); "
                f"{fixture!r} is {fixtures[fixture].type}: use 'remove'/'create'"
            )
    point, point_count = _point(a["point"]) if "point" in a else ("", 0)
    if point and do != "unplug":
        a["point"].error("'point' only applies to action 'unplug'")
    elif point and fixture in fixtures and fixtures[fixture].type not in CHIP_MODEL_TYPES:
        a["point"].error(
            f"'point' counts the reads of a chip model ({', '.join(CHIP_MODEL_TYPES)} "
            f"fixtures); {fixture!r} is {fixtures[fixture].type}: drop 'point'"
        )
    return ActionSpec(
        do=do,
        fixture=fixture,
        at=optional(a, "at", duration, None),
        after_worker=after_worker,
        after_ops=after_ops,
        bank=optional(a, "bank", scalar_int, 0),
        line=line,
        pull=optional(a, "pull", lambda n: choice(n, ("pull-up", "pull-down")), "pull-up"),
        repeat=optional(a, "repeat", lambda n: scalar_int(n, 1), 1),
        interval=optional(a, "interval", duration, 0.0),
        within=optional(a, "within", _bound, None),
        duration=optional(a, "duration", duration, 0.0),
        what=(what := optional(a, "what", lambda n: choice(n, PROVOKE + SELFTEST_PROVOKE), "")),
        level=optional(a, "level", lambda n: choice(n, UNBIND_LEVELS), None),
        jitter=optional(a, "jitter", duration, 0.0),
        point=point,
        point_count=point_count,
        via=("splat_selftest" if what in SELFTEST_PROVOKE else "lkdtm") if what else "",
    )


def _point(node: Node) -> tuple[str, int]:
    """'halfway' (through the read in progress), {bytes: N} or {transfers: N} from now."""
    if isinstance(node.raw, yaml.ScalarNode):
        choice(node, ("halfway",))
        return "halfway", 0
    counts = mapping(node, _POINT_COUNTS)
    if len(counts) != 1:
        node.error("give one of: halfway, {bytes: N}, {transfers: N}")
        return "", 0
    ((kind, count_node),) = counts.items()
    return kind, scalar_int(count_node, 1)


def _expect(node: Node | None) -> ExpectSpec:
    e = mapping(node, _EXPECT) if node is not None else {}
    errnos = tuple(optional(e, "worker_errnos", string_list, []))
    for name in errnos:
        if name not in ERRNO_NAMES:
            e["worker_errnos"].error(
                f"{name!r} is not a known errno; use one of: {', '.join(ERRNO_NAMES)}"
            )
    return ExpectSpec(
        no_splats=optional(e, "no_splats", scalar_bool, True),
        worker_errnos=errnos,
        workers_must_fail=optional(e, "workers_must_fail", scalar_bool, False),
        workers_exit_within=optional(e, "workers_exit_within", _bound, 10.0),
        action_within=optional(e, "action_within", _bound, 10.0),
        require_midread=optional(e, "require_midread", scalar_bool, True),
        max_slab_growth_kb=optional(e, "max_slab_growth_kb", scalar_int, None),
        max_fd_growth=optional(e, "max_fd_growth", scalar_int, None),
        max_identities=optional(e, "max_identities", lambda n: scalar_int(n, 1), None),
    )


def _kconfig_names(node: Node) -> tuple[str, ...]:
    names = string_list(node)
    available = paths.fragment_names()
    for name in names:
        if name not in available:
            node.error(f"no fragment kconfigs/{name}.config; available: {', '.join(available)}")
    return tuple(names)


def _path_within(path: str, cover: str) -> bool:
    if cover.endswith("/"):
        return path.startswith(cover)
    return path == cover


# The files of a kernel tree whose names have no dot: any other such name is a directory.
_DOTLESS_FILES = ("Makefile", "Kconfig", "Kbuild", "MAINTAINERS", "COPYING", "CREDITS", "README")


def _cover_problem(cover: str, tree: Path | None) -> str:
    """Why a covers entry matches no file it means (a directory without its '/'), or ""."""
    if tree is not None and (tree / cover).exists():
        if not cover.endswith("/") and (tree / cover).is_dir():
            return f"is a directory of {tree}: write {cover}/ (a directory ends in '/')"
        if cover.endswith("/") and not (tree / cover).is_dir():
            return f"is a file of {tree}, not a directory: write {cover.rstrip('/')}"
        return ""
    name = cover.rsplit("/", 1)[-1]
    if name and "." not in name and name not in _DOTLESS_FILES:
        return (
            f"is no file name (no extension), so it matches no file: a directory ends "
            f"in '/', write {cover}/"
        )
    return ""


def _covers(node: Node, tree: Path | None) -> tuple[str, ...]:
    items = [node] if isinstance(node.raw, yaml.ScalarNode) else sequence(node)
    covers = []
    for item in items:
        cover = scalar_str(item)
        if cover.startswith("/") or ".." in cover.split("/") or not cover.strip("/"):
            item.error(
                f"{cover!r}: write a path relative to the kernel tree's top, a directory "
                "with a trailing '/' (drivers/nvmem/) or a file (drivers/spi/spi-dln2.c)"
            )
        elif problem := _cover_problem(cover, tree):
            item.error(f"{cover!r} {problem}")
        covers.append(cover)
    return tuple(covers)


def _needs(node: Node) -> tuple[str, ...]:
    names = []
    for item in [node] if isinstance(node.raw, yaml.ScalarNode) else sequence(node):
        name = scalar_str(item)
        if name not in kapi.KERNEL_APIS:
            item.error(f"no kernel API {name!r}; known: {', '.join(kapi.KERNEL_APIS)}")
        names.append(name)
    return tuple(names)


def _with_fixture_apis(listed: tuple[str, ...], fixtures) -> tuple[str, ...]:
    needed = [
        name
        for fixture in fixtures
        if (module := fixture_types.get(fixture.type))
        for name in module.APIS
    ]
    return tuple(dict.fromkeys([*listed, *needed]))


def _with_fixture_fragments(listed: tuple[str, ...], fixtures) -> tuple[str, ...]:
    needed = [name for fixture in fixtures for name in fixture_fragments(fixture)]
    return tuple(dict.fromkeys([*listed, *needed]))


# Actions that only wait: a scenario of these alone changes nothing in the kernel.
_WAITING_ACTIONS = ("sleep", "wait-workers", "wait-ops")


def _check_proves_something(node: Node, workers, actions: list[ActionSpec]) -> None:
    """A scenario must act on the kernel or demand work: else every run passes, whatever."""
    if any(a.do not in _WAITING_ACTIONS for a in actions) or any(w.min_ops for w in workers):
        return
    node.error(
        "this scenario proves nothing: no action acts on a fixture or the kernel (remove, "
        "unbind, unplug, provoke, ...) and no worker must do any operation (min_ops: 0); "
        "add such an action, or give a worker min_ops: 1 or more"
    )


def parse_scenario(
    text: str, path: Path, tree: Path | None = None
) -> tuple[Scenario | None, list[SchemaError]]:
    """Parse one scenario file's text; return the record or the list of problems.

    ``tree``, a kernel tree, decides whether a covers entry is a file or a directory."""
    reader = Reader(path)
    root = reader.load(text)
    if root is None:
        return None, reader.errors
    top = mapping(root, _TOP)
    fixtures: dict[str, FixtureSpec] = {}
    if "fixtures" in top:
        raw = top["fixtures"]
        if isinstance(raw.raw, yaml.MappingNode) and raw.raw.value:
            for key_node, value_node in raw.raw.value:
                child = Node(value_node, f"fixtures.{key_node.value}", reader)
                fixtures[key_node.value] = _fixture(key_node.value, child, fixtures)
        else:
            raw.error("expected a mapping of fixture name -> fixture (type, banks)")
    workers: dict[str, WorkerSpec] = {}
    for wnode in sequence(top["workers"]) if "workers" in top else []:
        worker = _worker(wnode, fixtures)
        if worker is None:
            continue
        if worker.name in workers:
            wnode.error(f"worker name {worker.name!r} is used twice")
        _check_line_requests(wnode, worker, workers.values())
        workers[worker.name] = worker
    actions = []
    for anode in sequence(top["actions"]) if "actions" in top else []:
        action = _action(anode, fixtures, workers)
        if action is not None:
            actions.append(action)
    _check_proves_something(top.get("actions", top.get("workers", root)), workers.values(), actions)
    expect = _expect(top.get("expect"))
    name = optional(top, "name", scalar_str, "")
    if name and name != path.stem and path.suffix in (".yaml", ".yml"):
        top["name"].error(f"must match the file name ({path.stem!r}) so results map to files")
    scenario = Scenario(
        name=name,
        description=optional(top, "description", scalar_str, ""),
        path=str(path),
        kconfig=_with_fixture_fragments(
            optional(top, "kconfig", _kconfig_names, ()), fixtures.values()
        ),
        cmdline=tuple(optional(top, "cmdline", string_list, [])),
        fixtures=tuple(fixtures.values()),
        workers=tuple(workers.values()),
        actions=tuple(actions),
        expect=expect,
        cycles=optional(top, "cycles", lambda n: scalar_int(n, 1, CYCLES_MAX), 1),
        timeout=optional(top, "timeout", _bound, 300.0),
        repeat=optional(top, "repeat", lambda n: scalar_int(n, 1, REPEAT_MAX), 1),
        seed=optional(top, "seed", scalar_int, 0),
        covers=optional(top, "covers", lambda n: _covers(n, tree), ()),
        needs=_with_fixture_apis(optional(top, "needs", _needs, ()), fixtures.values()),
    )
    if reader.errors:
        return None, reader.errors
    return scenario, []


def load_scenario(path: Path, tree: Path | None = None) -> Scenario:
    """Read and check one file; raise SchemaErrors naming every problem."""
    try:
        text = textfile.read_text(path, "scenario file")
    except textfile.TextFileError as exc:
        raise SchemaErrors([SchemaError(path, exc.line, "", exc.message)]) from exc
    scenario, errors = parse_scenario(text, path, tree)
    if errors:
        raise SchemaErrors(errors)
    assert scenario is not None
    return scenario


def load_scenarios(paths_: list[Path], tree: Path | None = None) -> list[Scenario]:
    """Load several files, reporting the problems of all of them at once."""
    scenarios, errors = [], []
    for path in paths_:
        try:
            scenarios.append(load_scenario(path, tree))
        except SchemaErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise SchemaErrors(errors)
    return scenarios


def resolve(names: list[str]) -> list[Path]:
    """Scenario arguments are names from scenarios/ or paths to YAML files."""
    if not names:
        return paths.builtin_scenarios()
    out = []
    for name in names:
        candidate = Path(name)
        if candidate.suffix in (".yaml", ".yml") or candidate.exists():
            out.append(candidate)
            continue
        builtin = paths.SCENARIOS_DIR / f"{name}.yaml"
        if not builtin.exists():
            known = ", ".join(p.stem for p in paths.builtin_scenarios())
            raise SchemaErrors(
                [SchemaError(Path(name), 0, "", f"no such scenario; built in: {known}")]
            )
        out.append(builtin)
    return out

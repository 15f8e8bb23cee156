"""The worker types, one module each: scenario type "read-file" is guest/workers/read_file.py.

Each type's module has ``WORKER``, a subclass of base.Worker that says what
its op is and what its threads open. Found by name when a scenario asks for
the type, like the fixtures.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

from guest.protocol import WorkerSpec
from guest.workers.base import Worker


def types() -> tuple[str, ...]:
    """Every worker type's name, in the order of their module names."""
    names = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "WORKER"):
            names.append(info.name.replace("_", "-"))
    return tuple(names)


def worker_class(type_name: str) -> type[Worker]:
    module = importlib.import_module(f"{__name__}.{type_name.replace('-', '_')}")
    return module.WORKER


def make(
    spec: WorkerSpec, resolve: Callable[[str], str], fixture, seed: int, guarded: bool = False
) -> Worker:
    """The worker for one ``workers:`` entry (``guarded``: it shares the fixture with a
    write-read-back worker, so its reads take the fixture's I/O lock)."""
    return worker_class(spec.type)(spec, resolve, fixture, seed, guarded=guarded)

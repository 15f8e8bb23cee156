"""Kernel APIs a scenario or helper module needs, decided from the tree's headers.

A version number says nothing about a tree with a series applied (or a
vendor tree with a backport), so the header is what counts: a scenario whose
API the tree lacks is skipped with the reason, and a helper module is built
for the form of the API the header declares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Form:
    """One shape of an API, recognised by a declaration in its header."""

    name: str
    declares: str  # a regex over the header
    cflags: str  # what a helper module is built with for this form


@dataclass(frozen=True)
class Api:
    name: str
    header: str  # relative to the tree
    forms: tuple[Form, ...]  # first match wins; the last is the fallback
    about: str


KERNEL_APIS = {
    "revocable": Api(
        "revocable",
        "include/linux/revocable.h",
        (
            Form("per-access", r"\brevocable_init\s*\(", "-DREVOCABLE_PER_ACCESS"),
            Form("handle", r"\brevocable_alloc\s*\(", ""),
        ),
        "revocable resource management (revocable_provider_revoke(), revocable_try_access())",
    ),
    # gpiod_set_value*() return an errno in newer trees and void in older ones (6.1)
    "gpiod-set-value": Api(
        "gpiod-set-value",
        "include/linux/gpio/consumer.h",
        (
            Form("returns-int", r"\bint\s+gpiod_set_value_cansleep\s*\(", ""),
            Form(
                "returns-void",
                r"\bvoid\s+gpiod_set_value_cansleep\s*\(",
                "-DGPIOD_SET_RETURNS_VOID",
            ),
        ),
        "gpiod_set_value_cansleep() (guest/modules/gpio_consumer)",
    ),
}


@dataclass(frozen=True)
class Probe:
    """What the tree has of one API."""

    api: str
    present: bool
    form: str = ""
    cflags: str = ""
    why: str = ""

    def to_json(self) -> dict:
        return dict(self.__dict__)


def probe(tree: Path, name: str) -> Probe:
    api = KERNEL_APIS[name]
    header = tree / api.header
    try:
        text = header.read_text(errors="replace")
    except OSError:
        return Probe(name, False, why=f"the tree has no {api.header} (kernel API {name})")
    for form in api.forms:
        if re.search(form.declares, text):
            return Probe(name, True, form.name, form.cflags, f"{api.header}: {form.name} form")
    return Probe(
        name,
        False,
        why=f"{api.header} declares none of the known forms of {name} "
        f"({', '.join(f.name for f in api.forms)})",
    )


def missing(tree: Path, names: tuple[str, ...]) -> str | None:
    """Why a scenario needing ``names`` cannot run on ``tree`` (None: it can)."""
    for name in names:
        found = probe(tree, name)
        if not found.present:
            return found.why
    return None


def explain(names: tuple[str, ...], tree: Path | None) -> str:
    """'revocable (include/linux/revocable.h): ...' for listings; with a tree, what it has."""
    parts = []
    for name in names:
        api = KERNEL_APIS[name]
        said = f"{name} ({api.header})"
        if tree is not None:
            found = probe(tree, name)
            said += (
                f": {found.form} form in {tree}"
                if found.present
                else f": runs on {tree} are skipped ({found.why})"
            )
        parts.append(said)
    return "; ".join(parts)

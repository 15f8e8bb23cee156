"""Kernel APIs decided from the tree's headers, on the headers of tests/data/series."""

import subprocess
from pathlib import Path

from harness import kapi
from harness.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SERIES = ROOT / "tests" / "data" / "series"
HEADER = "include/linux/revocable.h"


def tree_with(tmp_path: Path, *series: str) -> Path:
    """A directory holding the header as the series leave it (git apply, header only)."""
    tree = tmp_path / "tree"
    (tree / "include" / "linux").mkdir(parents=True, exist_ok=True)
    for name in series:
        for patch in sorted((SERIES / name).glob("*.patch")):
            subprocess.run(
                ["git", "apply", f"--include={HEADER}", str(patch)], cwd=tree, check=True
            )
    return tree


def test_no_header_means_no_api_and_the_reason_names_the_header(tmp_path):
    found = kapi.probe(tree_with(tmp_path), "revocable")
    assert not found.present
    assert found.why == f"the tree has no {HEADER} (kernel API revocable)"
    scenario = load_scenario(ROOT / "scenarios" / "revocable-shared-fd-revoke.yaml")
    assert kapi.missing(tree_with(tmp_path), scenario.needs) == found.why


def test_the_merged_form_and_the_per_access_form(tmp_path):
    merged = kapi.probe(tree_with(tmp_path, "revocable-api"), "revocable")
    assert (merged.present, merged.form, merged.cflags) == (True, "handle", "")
    fixed = kapi.probe(
        tree_with(tmp_path / "b", "revocable-api", "revocable-per-access-index"), "revocable"
    )
    assert (fixed.form, fixed.cflags) == ("per-access", "-DREVOCABLE_PER_ACCESS")


def test_a_header_with_neither_form_is_not_the_api(tmp_path):
    tree = tree_with(tmp_path)
    (tree / HEADER).write_text("/* someone else's revocable.h */\nint revocable(void);\n")
    found = kapi.probe(tree, "revocable")
    assert not found.present and "none of the known forms" in found.why


def test_listing_says_what_a_tree_has(tmp_path):
    assert kapi.explain(("revocable",), None) == f"revocable ({HEADER})"
    tree = tree_with(tmp_path, "revocable-api")
    assert kapi.explain(("revocable",), tree).endswith(f"handle form in {tree}")

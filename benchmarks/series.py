"""`harness series` against its baseline, both measured in this invocation.

A/B:       harness series SCENARIO --base HEAD --series tests/data/series/spi-dln2-transfer-length
baseline:  harness run SCENARIO --tree BASE  +  harness run SCENARIO --tree BASE+SERIES
           (two checkouts, two independent clean builds: what a user does by hand)

Both start from an empty build cache with ccache disabled; the default
tree's unpacking and git import are not timed on either side (the baseline
makes its two checkouts from it before its clock starts). Same result is
required: the A/B calls the scenario fixed, the baseline's base run fails
and its head run passes. Prints the ratio and the head side's incremental
build time; writes benchmarks/results-series.json.

    .venv/bin/python benchmarks/series.py [--scenario mtd-data-integrity] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timedrun import timed_harness  # noqa: E402

from harness import paths, vcs  # noqa: E402
from harness.tree import default_tree  # noqa: E402

SERIES = ROOT / "tests" / "data" / "series" / "spi-dln2-transfer-length"


def harness(args: list[str], cache: Path, log: Path) -> tuple[int, float]:
    env = {**os.environ, "HARNESS_CACHE": str(cache), "CCACHE_DISABLE": "1"}
    return timed_harness(args, log, env)


def checkout(repo: Path, where: Path, patches: list[Path]) -> Path:
    vcs.git(repo, "worktree", "add", "-q", "--detach", str(where), vcs.IMPORT_REF)
    for patch in patches:
        vcs.git(where, "am", "-q", "--3way", str(patch), identity=True)
    return where


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="mtd-data-integrity")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    repo = default_tree().path  # unpacked and imported once, untimed
    work = Path(tempfile.mkdtemp(prefix="series-bench-"))
    results: dict = {"scenario": args.scenario, "repeat": args.repeat}

    ab_cache = work / "ab-cache"
    ab_cache.mkdir()
    (ab_cache / "trees").symlink_to(paths.cache_dir() / "trees")  # the same default tree
    out = work / "ab"
    ab_args = ["series", args.scenario, "--base", "HEAD", "--series", str(SERIES)]
    ab_args += ["--repeat", str(args.repeat), "--out", str(out)]
    code, ab_s = harness(ab_args, ab_cache, work / "ab.log")
    summary = json.loads((out / "summary.json").read_text())
    verdict = summary["scenarios"][0]["verdict"]
    head = summary["sides"]["head"]
    base = summary["sides"]["base"]
    results["ab"] = {
        "exit": code,
        "verdict": verdict,
        "wall_s": round(ab_s, 1),
        "base_build_s": base["build_s"],
        "head_build_s": head["build_s"],
        "head_objects_compiled": head["objects_compiled"],
    }

    trees = work / "trees"
    base_tree = checkout(repo, trees / "base", [])
    head_tree = checkout(repo, trees / "head", vcs.series_files(SERIES))
    runs = []
    for name, tree, want in (("base", base_tree, 1), ("head", head_tree, 0)):
        cache = work / f"{name}-cache"
        run_args = ["run", args.scenario, "--tree", str(tree), "--repeat", str(args.repeat)]
        code, took = harness(
            [*run_args, "--out", str(work / f"run-{name}")], cache, work / f"{name}.log"
        )
        record = json.loads((work / f"run-{name}" / "summary.json").read_text())
        runs.append(
            {
                "side": name,
                "exit": code,
                "wanted_exit": want,
                "wall_s": round(took, 1),
                "build_s": record["build"]["duration_s"],
            }
        )
    for tree in (base_tree, head_tree):
        vcs.git(repo, "worktree", "remove", "--force", str(tree))
    baseline_s = sum(r["wall_s"] for r in runs)
    results["baseline"] = {"runs": runs, "wall_s": round(baseline_s, 1)}
    same = verdict == "fixed" and all(r["exit"] == r["wanted_exit"] for r in runs)
    results["same_result"] = same
    results["ratio"] = round(ab_s / baseline_s, 3)
    sides = ", ".join(f"{r['side']} {r['wall_s']} s" for r in runs)
    print(f"A/B harness series:           {ab_s:7.1f} s  (verdict {verdict})")
    print(f"  base build (clean):         {base['build_s']:7.1f} s")
    print(
        f"  head build (incremental):   {head['build_s']:7.1f} s  "
        f"({head['objects_compiled']} objects; goal <= 60 s)"
    )
    print(f"baseline: 2 x harness run:    {baseline_s:7.1f} s  " f"({sides})")
    print(f"ratio A/B / baseline:         {results['ratio']:7.3f}  (same result: {same})")
    (ROOT / "benchmarks" / "results-series.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

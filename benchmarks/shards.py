"""Sharded runs against the unsharded baseline, all measured in this invocation.

baseline:  harness run --kernel A            (the default scenario set, one job)
sharded:   harness run --kernel A --shard K/N for K = 1..N, one after another here;
           a parallel pipeline waits for the longest shard, so that is its wall time

One artifact A (`harness build --artifact`, built or taken from the cache before the
clock starts) serves every run, so no side builds. For each N the shards are merged
and must give the baseline's testcases with the same verdicts (splat-driven verdicts
are deterministic; a scenario whose verdict differs is reported, not hidden). Prints
per N the longest shard, its ratio to the baseline, and the evenness (shortest /
longest shard); writes benchmarks/results-shards.json.

    .venv/bin/python benchmarks/shards.py [--shards 2 4] [--accel tcg] [SCENARIO...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from timedrun import ROOT, timed_harness


def verdicts(out: Path) -> dict[str, str]:
    """Per scenario item: pass, fail, error or skipped (per-shard extras left out)."""
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    found = {}
    for case in suite.iter("testcase"):
        name = case.get("name")
        if name.startswith(("kernel log outside scenarios", "harness")):
            continue
        kind = next((k for k in ("error", "failure", "skipped") if case.find(k) is not None), "")
        found[name] = {"error": "error", "failure": "fail", "skipped": "skipped"}.get(kind, "pass")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*")
    parser.add_argument("--shards", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--accel", default="tcg")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results-shards.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shards-bench-"))
    kernel = work / "kernel.tar.gz"
    code, build_s = timed_harness(["build", "--artifact", str(kernel)], work / "build.log")
    if code != 0:
        print(f"build failed ({code}): {work / 'build.log'}", file=sys.stderr)
        return 1
    common = [*args.scenarios, "--kernel", str(kernel), "--accel", args.accel]
    code, whole_s = timed_harness(
        ["run", *common, "--out", str(work / "whole")], work / "whole.log"
    )
    whole = verdicts(work / "whole")
    whole_summary = json.loads((work / "whole" / "summary.json").read_text())
    results: dict = {
        "accel": args.accel,
        "kernel_release": whole_summary["properties"].get("kernel_release"),
        "artifact_build_s": build_s,
        "unsharded": {
            "exit": code,
            "wall_s": whole_s,
            "items": len(whole),
            "boots": len(whole_summary["boots"]),
        },
        "sharded": {},
    }
    print(f"unsharded: {whole_s:.0f} s, {len(whole)} items, {len(whole_summary['boots'])} boots")
    for total in args.shards:
        shards = []
        for k in range(1, total + 1):
            out = work / f"n{total}-s{k}"
            run = ["run", *common, "--shard", f"{k}/{total}", "--out", str(out)]
            code, wall = timed_harness(run, work / f"n{total}-s{k}.log")
            summary = json.loads((out / "summary.json").read_text())
            shards.append(
                {
                    "shard": f"{k}/{total}",
                    "exit": code,
                    "wall_s": wall,
                    "items": len(summary["items"]),
                    "boots": len(summary["boots"]),
                    "expected_s": summary["shard"]["expected_s"][str(k)],
                }
            )
        merged = work / f"n{total}-merged"
        dirs = [str(work / f"n{total}-s{k}") for k in range(1, total + 1)]
        merge_code, _ = timed_harness(
            ["merge", *dirs, "--out", str(merged)], work / f"n{total}.log"
        )
        got = verdicts(merged)
        differ = sorted(k for k in set(got) | set(whole) if got.get(k) != whole.get(k))
        longest = max(s["wall_s"] for s in shards)
        shortest = min(s["wall_s"] for s in shards)
        results["sharded"][str(total)] = {
            "shards": shards,
            "longest_s": longest,
            "ratio_to_unsharded": round(longest / whole_s, 2),
            "evenness": round(shortest / longest, 2),
            "merge_exit": merge_code,
            "same_testcases": set(got) == set(whole),
            "verdicts_differ": {k: [whole.get(k), got.get(k)] for k in differ},
        }
        print(
            f"{total} shards: longest {longest:.0f} s ({longest / whole_s:.2f} x unsharded), "
            f"shortest {shortest:.0f} s (evenness {shortest / longest:.2f}); "
            f"merge exit {merge_code}, testcases {'same' if set(got) == set(whole) else 'DIFFER'}"
            + (f", verdicts differ: {differ}" if differ else "")
        )
    Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {args.json} (work: {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

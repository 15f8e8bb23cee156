"""Detection rate of the scenarios that target bugs the default kernel has.

Runs each scenario N times (`harness run --repeat N`, separate seeds, one
boot per repetition once a splat taints the kernel) and prints, per
scenario, how many runs caught the bug, the titles seen, and the scenario
time (kernel clock, from the scenario's start marker) to its first splat, and the
cycle each caught run stopped in (what a cut in `cycles:` would lose).
Writes benchmarks/detection.json (or --json F; --tree DIR tests that tree).

    .venv/bin/python benchmarks/detection.py [--runs 10] [--tree DIR --json F] [SCENARIO ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Scenarios that fail on Debian's 6.12 because of the bug they target.
BUG_SCENARIOS = (
    "nvmem-in-kernel-consumer-unbind",
    "mtd-spi-nor-unbind-during-read",
    "mtd-spi-nor-unbind-controller-during-read",
    "mtd-spi-nor-unplug-during-read",
    "mtd-data-integrity",
)


def summarise(summary: dict) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for item in summary["items"]:
        row = rows.setdefault(
            item["scenario"],
            {
                "runs": 0,
                "caught": 0,
                "errors": 0,
                "titles": {},
                "first_splat_s": [],
                "caught_in_cycle": [],
            },
        )
        row["runs"] += 1
        row["errors"] += item["status"] == "error"
        row["caught"] += item["status"] == "fail"
        for splat in item["splats"]:
            row["titles"][splat["title"]] = row["titles"].get(splat["title"], 0) + 1
        if item.get("first_splat_s") is not None:
            row["first_splat_s"].append(item["first_splat_s"])
        guest = item.get("guest") or {}
        if item["status"] == "fail" and guest.get("cycles_done") is not None:
            # a splat or violation stops the item in the cycle it came: cycles_done counts it
            row["caught_in_cycle"].append(guest["cycles_done"])
    for name, row in rows.items():
        times = row["first_splat_s"]
        row["rate"] = round(row["caught"] / row["runs"], 3) if row["runs"] else 0.0
        row["first_splat_median_s"] = round(statistics.median(times), 1) if times else None
        row["first_splat_max_s"] = round(max(times), 1) if times else None
        row["cycles"] = next(
            (
                i["guest"]["cycles"]
                for i in summary["items"]
                if i["scenario"] == name and i.get("guest")
            ),
            None,
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=list(BUG_SCENARIOS))
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", help="results directory (default: a temporary one)")
    parser.add_argument("--tree", help="kernel tree to test (default: the built-in 6.12)")
    parser.add_argument(
        "--json", default=str(ROOT / "benchmarks" / "detection.json"), help="where to write rows"
    )
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="detection-"))
    cmd = [sys.executable, "-m", "harness.cli", "run", *args.scenarios]
    cmd += ["--repeat", str(args.runs), "--out", str(out)]
    if args.tree:
        cmd += ["--tree", args.tree]
    code = subprocess.run(cmd, cwd=ROOT).returncode
    if code not in (0, 1, 4):
        print(f"harness run exited {code}", file=sys.stderr)
        return code
    summary = json.loads((out / "summary.json").read_text())
    rows = summarise(summary)
    result = {
        "accelerator": summary["properties"].get("accelerator"),
        "kernel_release": summary["properties"].get("kernel_release"),
        "scenarios": rows,
    }
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"\naccelerator: {result['accelerator']}")
    print(f"{'scenario':44} {'caught':>8} {'err':>4} {'1st splat median/max s':>24}")
    for name, row in rows.items():
        times = f"{row['first_splat_median_s']}/{row['first_splat_max_s']}"
        print(f"{name:44} {row['caught']:>3}/{row['runs']:<4} {row['errors']:>4} {times:>24}")
        if row["caught_in_cycle"]:
            print(
                f"    caught in cycle (1-based) of {row['cycles']}: "
                f"{sorted(row['caught_in_cycle'])}"
            )
        for title, count in sorted(row["titles"].items(), key=lambda kv: -kv[1]):
            print(f"    {count:>3}x {title}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The kernel matrix: the default scenario set on every kernel the harness supports.

For each Debian linux-source package of the matrix (harness/debsource.py:
6.1, the older LTS; 6.12, the default; 7.3, mainline) the tree is fetched and
unpacked once into the cache, then `harness run --tree TREE` builds it and runs
every built-in scenario. Each scenario's verdict is classified:

- pass, or skipped (the reason names the kernel feature the tree lacks);
- kernel bug: a failure with splats (their titles), or a broken expectation
  that a reviewed entry of KNOWN_KERNEL_BUGS explains (which bug, and the
  proof that it is the kernel's);
- harness problem: anything else (an error, a failure nobody explained).

Writes benchmarks/kernels.json (or --json F). Wall times per kernel: fetch,
build (from the build record) and suite (first boot to last verdict).

    .venv/bin/python benchmarks/kernels.py [--kernels 6.1 6.12 7.3] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timedrun import timed_harness  # noqa: E402

from harness import debsource, splats, tree  # noqa: E402

# Broken expectations (no splat) that are kernel bugs, reviewed by hand: scenario ->
# (what every violation of the failure says, the bug, the proof). Anything else
# without a splat is counted as a harness problem.
KNOWN_KERNEL_BUGS = {
    "mtd-data-integrity": (
        # wrong data; the reader that saw it stops (EBADMSG) before its one op
        r"differs from the model|did 0 ops \(min_ops 1\)|present: \{'EBADMSG': 1\}",
        "spi-dln2 truncates a transfer of 64 KiB or more to its low 16 bits (u16 length "
        "in dln2_spi_rdwr), so a long MTD read returns wrong data",
        "tests/data/series/spi-dln2-transfer-length fixes it (harness series: fixed)",
    ),
    "gpio-sim-plug-cycle": (
        r"came back under \d+ different kernel names",
        "gpiolib leaks the gpio_device of a removed chip whose line was still requested: "
        "gpiod_free() skips put_device() when gpiod_free_commit() finds gdev->chip gone, so "
        "each re-created chip takes a new gpiochip number (one per cycle)",
        "drivers/gpio/gpiolib.c gpiod_free() of the tree; the guest's fd count did not grow; "
        "6.12 and 7.3 (gpiolib's SRCU rework) stay within the bound",
    ),
    "gpio-sim-remove-under-kernel-consumer": (
        r"kept working after the provider was removed|still running \d+ s after chip0 was removed",
        "gpiolib answers calls on a removed chip's descriptor with success: validate_desc() "
        "returns 0 once gdev->chip is gone ('backing chip is gone'), so "
        "gpiod_get_value_cansleep() reads 0 and the in-kernel consumer never sees an error",
        "drivers/gpio/gpiolib.c validate_desc() of the tree; the console has 'backing chip is "
        "gone'; 6.12 and 7.3 answer -ENODEV",
    ),
}


def classify(item: dict) -> dict:
    """One item of a summary.json as a matrix cell."""
    status = item["status"]
    titles = sorted({s["title"] for s in item["splats"]})
    cell = {
        "verdict": status,
        "titles": titles,
        "seconds": item.get("duration_s"),
        "boot": item.get("boot"),
    }
    if status == "pass":
        cell["class"] = "pass"
    elif status == "skipped":
        cell["class"] = "skipped"
        cell["why"] = (item.get("error") or "").removeprefix("skipped: ")
    elif status == "fail" and titles:
        cell["class"] = "kernel bug"
        cell["bug"] = "; ".join(titles)
    elif status == "fail" and (known := KNOWN_KERNEL_BUGS.get(item["scenario"])):
        said = item.get("violations") or []
        if said and all(re.search(known[0], text) for text in said):
            cell["class"] = "kernel bug"
            cell["bug"], cell["proof"] = known[1], known[2]
        else:
            cell["class"] = "harness problem"
        cell["violations"] = item.get("violations") or []
    else:
        cell["class"] = "harness problem"
        cell["why"] = item.get("error") or "; ".join(item.get("violations") or [])
    return cell


def run_kernel(name: str, out: Path) -> dict:
    started = time.monotonic()
    source = debsource.package(name)
    kernel_tree = tree.default_tree(debsource.tarball(source))
    fetch_s = round(time.monotonic() - started, 1)
    results = out / name
    code, wall = timed_harness(
        ["run", "--tree", str(kernel_tree.path), "--out", str(results)], out / f"{name}.log"
    )
    row: dict = {
        "package": source.name,
        "suite": source.suite,
        "version": kernel_tree.version,
        "exit": code,
        "fetch_unpack_s": fetch_s,
        "wall_s": wall,
        "log": str(out / f"{name}.log"),
        "summary": str(results / "summary.json"),
    }
    return read_results(row)


def read_results(row: dict) -> dict:
    """Fill a kernel's row from its run's summary.json: times, boots, classified cells."""
    try:
        summary = json.loads(Path(row["summary"]).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        row["error"] = f"no summary.json: {exc}"
        return row
    row.pop("error", None)
    build = summary.get("build") or {}
    row.update(
        {
            "kernel_release": summary["properties"].get("kernel_release"),
            "accelerator": summary["properties"].get("accelerator"),
            "build_s": build.get("duration_s"),
            "objects_compiled": build.get("objects_compiled"),
            "run_s": summary.get("duration_s"),
            # config, the KVM probe, boots and scenarios: the run without its compilation
            "suite_s": round(summary["duration_s"] - (build.get("duration_s") or 0), 1),
            "boots": len(summary["boots"]),
            "boot_reasons": [b.get("why") for b in summary["boots"]],
            "counts": summary["counts"],
            "harness_error": summary.get("harness_error"),
            "splats_outside_scenarios": [
                s["title"] for b in summary["boots"] for s in b["splats_outside_scenarios"]
            ],
            "scenarios": {i["scenario"]: classify(i) for i in summary["items"]},
        }
    )
    row["harness_problems"] = sorted(
        n for n, c in row["scenarios"].items() if c["class"] == "harness problem"
    )
    if row["objects_compiled"]:
        row["cold_build"] = {"build_s": row["build_s"], "objects_compiled": row["objects_compiled"]}
    return row


def keep_cold_build(new: dict, old: dict) -> dict:
    """A rerun on a warm build directory compiles little or nothing: keep the figures of the
    build that compiled the most (the cold one)."""
    builds = [r["cold_build"] for r in (new, old) if "cold_build" in r]
    if builds:
        new["cold_build"] = max(builds, key=lambda b: b["objects_compiled"])
    return new


def _splats(summary: Path) -> dict[str, list[splats.Splat]]:
    try:
        items = json.loads(summary.read_text())["items"]
    except (OSError, ValueError, KeyError):
        return {}
    return {i["scenario"]: [splats.Splat(**s) for s in i["splats"]] for i in items}


def compare_bugs(rows: dict[str, dict], default: str = "6.12") -> None:
    """Per failing scenario: is its first report the default kernel's bug (splats.same_bug)?

    What series and bisection would conclude comparing runs across the two kernels.
    """
    base = _splats(Path(rows.get(default, {}).get("summary", "")))
    for name, row in rows.items():
        if name == default or not base:
            continue
        mine = _splats(Path(row.get("summary", "")))
        for scenario, cell in row.get("scenarios", {}).items():
            if mine.get(scenario) and base.get(scenario):
                cell[f"same_bug_as_{default}"] = splats.same_bug(
                    mine[scenario][0], base[scenario][0]
                )


def table(rows: dict[str, dict]) -> str:
    """A markdown table: one line per scenario, one column per kernel."""
    names = sorted({s for r in rows.values() for s in r.get("scenarios", {})})
    kernels = list(rows)
    lines = [
        "| scenario | "
        + " | ".join(f"{k} ({rows[k].get('version', '?')})" for k in kernels)
        + " |",
        "|---|" + "---|" * len(kernels),
    ]
    for name in names:
        cells = []
        for k in kernels:
            cell = rows[k].get("scenarios", {}).get(name)
            if cell is None:
                cells.append("-")
            elif cell["class"] == "kernel bug":
                cells.append(f"fail: {cell['bug']}")
            elif cell["class"] == "skipped":
                cells.append(f"skipped ({cell['why']})")
            else:
                cells.append(cell["class"] if cell["class"] != "pass" else "pass")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", nargs="+", default=list(debsource.MATRIX))
    parser.add_argument("--out", help="results directory (default: a temporary one)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "kernels.json"))
    parser.add_argument(
        "--reclassify",
        action="store_true",
        help="run nothing: classify the results the rows point to again (after a review of "
        "KNOWN_KERNEL_BUGS)",
    )
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="harness-kernels-"))
    out.mkdir(parents=True, exist_ok=True)
    path = Path(args.json)
    rows = json.loads(path.read_text()).get("kernels", {}) if path.exists() else {}
    for name in args.kernels:
        old = dict(rows.get(name, {}))
        if args.reclassify:
            rows[name].setdefault("summary", str(out / name / "summary.json"))
            rows[name] = read_results(rows[name])
        else:
            print(f"kernel {name}: running the default set (results in {out / name})", flush=True)
            rows[name] = run_kernel(name, out)
        rows[name] = keep_cold_build(rows[name], old)
        row = rows[name]
        print(
            f"kernel {name}: exit {row['exit']}, build {row.get('build_s')} s, "
            f"suite {row.get('suite_s')} s, {row.get('counts')}, "
            f"harness problems: {row.get('harness_problems', row.get('error'))}",
            flush=True,
        )
        # written after each kernel: a later one's failure keeps the earlier rows
        ordered = {k: rows[k] for k in debsource.MATRIX if k in rows}
        compare_bugs(ordered)
        path.write_text(json.dumps({"kernels": ordered}, indent=1) + "\n")
    print(table({k: rows[k] for k in debsource.MATRIX if k in rows}))
    problems = [k for k, r in rows.items() if r.get("harness_problems") or r.get("error")]
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

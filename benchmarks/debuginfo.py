"""What source lines in reports cost: clean builds of one tree with each debug-info choice.

Each variant is the harness's own fragments plus one more (benchmarks/debuginfo/*.config),
built from scratch without ccache (the cost a cold CI cache pays), in the same invocation,
one after the other: build time as a ratio to the variant without debug info, the size of
vmlinux and of the build directory, and whether a frame of the build's own code decodes
to a file:line (symbols.for_build). Writes benchmarks/debuginfo.json (or --json F).

    .venv/bin/python benchmarks/debuginfo.py [--tree DIR] [VARIANT ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import stages, symbols  # noqa: E402
from harness.build import build_dir_for  # noqa: E402
from harness.scenario import load_scenarios, resolve  # noqa: E402

VARIANTS = ROOT / "benchmarks" / "debuginfo"
BASELINE = "none"


def _du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def _decodes(objects: symbols.Objects | None) -> str:
    """A frame of at24_read (built in: every scenario's EEPROM driver) as decoded here."""
    if objects is None:
        return ""
    table = symbols._symbols(objects.vmlinux).get("at24_read", [])
    if not table:
        return ""
    frame = f" at24_read+0x10/{hex(table[0].size)}"
    (decoded,) = symbols.decode([frame], objects)
    return decoded.strip()


def measure(tree: str | None, variant: str) -> dict:
    fragment = VARIANTS / f"{variant}.config"
    request = stages.BuildRequest(tree=tree, kconfig=(str(fragment),), use_ccache=False)
    kernel_tree = stages.open_kernel_tree(request)
    scenarios = load_scenarios(resolve([]))
    config = stages.config_kernel(request, kernel_tree, scenarios)
    out = build_dir_for(config)
    shutil.rmtree(out, ignore_errors=True)  # from scratch
    _, record = stages.build_kernel(request, kernel_tree, scenarios)
    vmlinux = Path(record.build_dir) / "vmlinux"
    return {
        "variant": variant,
        "fragment": fragment.read_text(),
        "build_s": record.duration_s,
        "objects": record.objects_compiled,
        "vmlinux_mb": round(vmlinux.stat().st_size / 1e6, 1),
        "build_dir_mb": round(_du(Path(record.build_dir)) / 1e6, 1),
        "decoded": _decodes(symbols.for_build(record.build_dir, record.modules)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", help="default: every benchmarks/debuginfo/*.config")
    parser.add_argument("--tree", help="default: the default tree")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "debuginfo.json"))
    args = parser.parse_args()
    names = args.variants or sorted(p.stem for p in VARIANTS.glob("*.config"))
    names = [BASELINE] + [n for n in names if n != BASELINE]
    rows = [measure(args.tree, name) for name in names]
    base = rows[0]["build_s"]
    for row in rows:
        row["build_ratio"] = round(row["build_s"] / base, 2)
        print(
            f"{row['variant']:<24} {row['build_s']:7.0f} s  x{row['build_ratio']:<5} "
            f"vmlinux {row['vmlinux_mb']:7.1f} MB  build dir {row['build_dir_mb']:7.1f} MB  "
            f"{row['decoded'] or '(no lines)'}"
        )
    Path(args.json).write_text(json.dumps({"tree": args.tree or "default", "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

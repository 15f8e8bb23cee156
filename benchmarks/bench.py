"""Build and boot benchmarks, each against a baseline measured in the same invocation.

1. clean build: harness default kernel vs `vng --kconfig` + the same fragments
   (goal: ratio <= 0.35)
2. incremental rebuild after touching one driver file (goal: <= 90 s)
3. boot to the first scenario step vs plain `vng --exec true` on the same
   kernel (goal: ratio <= 0.40)

Clean builds run with ccache disabled in fresh build directories. Prints a
table and writes benchmarks/results.json.

    .venv/bin/python benchmarks/bench.py [--skip-vng-build] [--boots N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import accel, kconfig, paths  # noqa: E402
from harness.boot import BootSpec, Guest, _vng_env  # noqa: E402
from harness.build import build, build_dir_for, configure  # noqa: E402
from harness.tree import default_tree  # noqa: E402

TOUCHED = "drivers/gpio/gpio-sim.c"


def timed(cmd: list[str], cwd: Path, log: Path, env: dict | None = None) -> float:
    started = time.monotonic()
    with log.open("a") as sink:
        subprocess.run(cmd, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT, check=True)
    return time.monotonic() - started


def no_ccache_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CCACHE_DISABLE"] = "1"
    return env


def clean_harness_build(tree, fragments, work: Path) -> float:
    """Same configuration as the harness uses, compiled from scratch without ccache."""
    config = configure(tree, fragments)
    out = work / "harness-clean"
    out.mkdir()
    shutil.copyfile(config.dotconfig, out / ".config")
    log = work / "harness-clean.log"
    jobs = f"-j{len(os.sched_getaffinity(0))}"
    timed(["make", f"O={out}", "olddefconfig"], tree.path, log)
    return timed(["make", f"O={out}", jobs], tree.path, log, env=no_ccache_env())


def clean_vng_build(tree, fragments, work: Path) -> float:
    out = work / "vng-clean"
    out.mkdir()
    log = work / "vng-clean.log"
    vng = str(Path(sys.executable).parent / "vng")
    cmd = [vng, "--kconfig"]
    for frag in fragments.files:
        cmd += ["--config", str(frag)]
    timed([*cmd, f"O={out}"], tree.path, log, env=_vng_env())
    jobs = f"-j{len(os.sched_getaffinity(0))}"
    return timed(["make", f"O={out}", jobs], tree.path, log, env=no_ccache_env())


def incremental_rebuild(tree, fragments) -> tuple[float, int]:
    """Touch one driver file in the harness build's tree; time the harness rebuild."""
    config = configure(tree, fragments)
    build(config)  # make sure the build directory is complete first
    (tree.path / TOUCHED).touch()
    record = build(config)
    return record.duration_s, record.objects_compiled


def boot_to_first_step(image: Path, chosen) -> float:
    """Host wall time from starting QEMU (vng --dry-run included) to the scenario start event."""
    work = Path(tempfile.mkdtemp(prefix="bench-boot-"))
    scenario = paths.SCENARIOS_DIR / "gpio-sim-remove-under-readers.yaml"
    from harness.results import expand
    from harness.scenario import load_scenario

    (item,) = expand([load_scenario(scenario)], repeat=1, seed=None)
    plan = work / "plan.json"
    plan.write_text(json.dumps({"result_dir": str(work / "guest"), "items": [item.plan_entry()]}))
    guest = Guest(BootSpec(image, chosen, (), plan=plan, rwdirs=(work,)), work / "console.log")
    started = time.monotonic()
    guest.start()
    elapsed = None
    try:
        for event in guest.events(lambda: started + 600):
            if event.kind == "start":
                elapsed = time.monotonic() - started
                break
    finally:
        guest.stop()
        shutil.rmtree(work, ignore_errors=True)
    if elapsed is None:
        raise RuntimeError("the guest never started the scenario")
    return elapsed


def plain_vng_exec_true(image: Path, chosen) -> float:
    vng = str(Path(sys.executable).parent / "vng")
    cmd = [vng, "--run", str(image), "--exec", "true"]
    if chosen.name == "tcg":
        cmd.insert(1, "--disable-kvm")
    started = time.monotonic()
    out = subprocess.run(cmd, env=_vng_env(), capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - started
    # Without udev, virtme-ng-init finds no virtio-serial script ports, runs the
    # command on the console and cannot report its exit code: vng exits 255.
    if out.returncode not in (0, 255):
        raise RuntimeError(f"vng --exec true failed ({out.returncode}): {out.stderr[-500:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-vng-build", action="store_true", help="skip the 30-minute baseline")
    parser.add_argument("--boots", type=int, default=3, help="boots per side for the boot ratio")
    parser.add_argument(
        "--only",
        choices=["build", "incremental", "boot"],
        action="append",
        help="run only these measures (repeatable; default: all)",
    )
    args = parser.parse_args()
    wanted = set(args.only or ["build", "incremental", "boot"])
    tree = default_tree()
    fragments = kconfig.FragmentSet.for_scenarios([], [])  # the harness's default kernel
    results: dict[str, float | int | str | None] = {}
    if "build" in wanted:
        measure_builds(tree, fragments, results, args.skip_vng_build)
    if "incremental" in wanted:
        seconds, objects = incremental_rebuild(tree, fragments)
        results["incremental_rebuild_s"] = seconds
        results["incremental_objects"] = objects
    if "boot" in wanted:
        measure_boots(tree, fragments, results, args.boots)
    (ROOT / "benchmarks" / "results.json").write_text(json.dumps(results, indent=1))
    print_table(results)
    return 0


def measure_builds(tree, fragments, results: dict, skip_vng: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-build-", dir=paths.cache_dir()))
    try:
        results["harness_clean_build_s"] = round(clean_harness_build(tree, fragments, work), 1)
        print(f"harness clean build: {results['harness_clean_build_s']} s", flush=True)
        if not skip_vng:
            results["vng_clean_build_s"] = round(clean_vng_build(tree, fragments, work), 1)
            results["build_ratio"] = round(
                results["harness_clean_build_s"] / results["vng_clean_build_s"], 3
            )
            print(f"vng --kconfig clean build: {results['vng_clean_build_s']} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure_boots(tree, fragments, results: dict, boots: int) -> None:
    config = configure(tree, fragments)
    image = build_dir_for(config) / "arch" / "x86" / "boot" / "bzImage"
    chosen = accel.choose(accel.requested_from_env(None), image)
    results["accelerator"] = f"{chosen.name}: {chosen.reason}"
    ours = [boot_to_first_step(image, chosen) for _ in range(boots)]
    plain = [plain_vng_exec_true(image, chosen) for _ in range(boots)]
    results["boot_to_first_step_s"] = round(statistics.median(ours), 2)
    results["vng_exec_true_s"] = round(statistics.median(plain), 2)
    results["boot_ratio"] = round(statistics.median(ours) / statistics.median(plain), 3)
    results["boot_samples"] = {
        "harness": [round(x, 2) for x in ours],
        "vng": [round(x, 2) for x in plain],
    }


def print_table(results: dict) -> None:
    print()
    print(f"{'measure':48} {'value':>10}  goal")
    rows = [
        ("clean build, harness kernel (s)", results.get("harness_clean_build_s"), ""),
        ("clean build, vng --kconfig (s)", results.get("vng_clean_build_s"), ""),
        ("  ratio", results.get("build_ratio"), "<= 0.35"),
        (
            f"incremental rebuild, touch {TOUCHED} (s)",
            results.get("incremental_rebuild_s"),
            "<= 90",
        ),
        ("boot to first scenario step (s, median)", results.get("boot_to_first_step_s"), ""),
        ("vng --exec true (s, median)", results.get("vng_exec_true_s"), ""),
        ("  ratio", results.get("boot_ratio"), "<= 0.40"),
    ]
    for name, value, goal in rows:
        print(f"{name:48} {value if value is not None else '-':>10}  {goal}")


if __name__ == "__main__":
    sys.exit(main())

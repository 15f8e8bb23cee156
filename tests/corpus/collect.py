"""Regenerate the splat parser's corpus: real console logs from the harness kernel.

Boots the harness-built kernel once per case and provokes one report with
LKDTM (provoke-crash/DIRECT) or with guest/modules/splat_selftest (lockdep, might_sleep, RCU
stall, page state, kmemleak and driver use-after-free reports LKDTM cannot
make). Writes tests/data/logs/<case>.log. A case may add kernel parameters
(module-bad-page: init_on_free=1) or config fragments: module-leak and
lkdtm-corrupt_list_del-bug need leak-and-corruption.config, a second build
of the tree (the harness's own kernel has no kmemleak and WARNs on list
corruption); a case whose detector the tree does not build is skipped.

    .venv/bin/python tests/corpus/collect.py [CASE...]
    .venv/bin/python tests/corpus/collect.py --tree "$(harness fetch 7.3)" --out tests/data/logs/7.3

The expected titles live in tests/data/logs/expected.json (and in each other
kernel's directory beside it) and are reviewed by hand when the corpus
changes: that review is the point of the corpus.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harness import accel, kconfig  # noqa: E402
from harness.boot import BootSpec, Guest  # noqa: E402
from harness.build import build, configure  # noqa: E402
from harness.tree import default_tree, open_tree  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "data" / "logs"
DIRECT = "/sys/kernel/debug/provoke-crash/DIRECT"
TRIGGER = "/sys/kernel/debug/splat_selftest/trigger"

LKDTM = [
    "WARNING",
    "WARNING_MESSAGE",
    "BUG",
    "EXCEPTION",
    "ACCESS_NULL",
    "READ_AFTER_FREE",
    "WRITE_AFTER_FREE",
    "SLAB_FREE_DOUBLE",
    "SLAB_LINEAR_OVERFLOW",
    "REFCOUNT_DEC_ZERO",
    "REFCOUNT_INC_OVERFLOW",
    "CORRUPT_LIST_ADD",
    "CORRUPT_LIST_DEL",
    "ARRAY_BOUNDS",
    "PANIC",
]
# Reports that need the detector's timeout to pass: trigger in the background, then
# wait (up to 90 s) until the kernel log shows the report, and 2 s more for its trace.
SLOW = {"HUNG_TASK": "blocked", "SOFTLOCKUP": "soft lockup"}
MODULE_CASES = ["abba", "recursive", "unlock", "atomic-sleep", "odebug", "mutex-atomic-a"]
MODULE_CASES += ["mutex-atomic-b", "mutex-atomic-contended", "devm-priv", "devm-buf"]
MODULE_CASES += ["sysfs-dup"]
MODULE_SLOW = {"hung-io": "blocked"}
RCU_PARAMS = "/sys/module/rcupdate/parameters"
LEAK_AND_CORRUPTION = HERE / "leak-and-corruption.config"


@dataclass(frozen=True)
class Case:
    """One boot: the shell command that provokes the report, and what its kernel needs."""

    command: str
    timeout: float = 120.0
    cmdline: tuple[str, ...] = ()
    fragments: tuple[Path, ...] = ()  # extra config fragments: a build of their own
    needs: str | None = None  # a symbol (no CONFIG_) the build must have, else skipped


def _until(text: str) -> str:
    """Shell: wait for ``text`` in the kernel log (bounded), then for the rest of the report."""
    return f"for i in $(seq 90); do dmesg | grep -q '{text}' && break; sleep 1; done; sleep 2"


MODULE = "{module}"  # the command's placeholder for the module built for the case's kernel


def _trigger(case: str, before: str = "") -> str:
    return f"insmod {MODULE}; {before}echo {case} > {TRIGGER}; sleep 2"


def cases() -> dict[str, Case]:
    out = {f"lkdtm-{c.lower()}": Case(f"echo {c} > {DIRECT}; sleep 2") for c in LKDTM}
    for crash, text in SLOW.items():
        out[f"lkdtm-{crash.lower()}"] = Case(f"(echo {crash} > {DIRECT} &); {_until(text)}", 180.0)
    for case in MODULE_CASES:
        out[f"module-{case}"] = Case(_trigger(case))
    for case, text in MODULE_SLOW.items():
        out[f"module-{case}"] = Case(
            f"insmod {MODULE}; (echo {case} > {TRIGGER} &); {_until(text)}", 180.0
        )
    # RCU stalls: the timeouts are runtime parameters; a 2 s (expedited) or 3 s
    # (750 jiffies at HZ=250, RCU Tasks) stall beats the reader's 8 s spin
    out["module-rcu-exp-stall"] = Case(
        _trigger("rcu-exp-stall", f"echo 2000 > {RCU_PARAMS}/rcu_exp_cpu_stall_timeout; "),
        180.0,
    )
    out["module-rcu-tasks-stall"] = Case(
        _trigger("rcu-tasks-stall", f"echo 750 > {RCU_PARAMS}/rcu_task_stall_timeout; "),
        180.0,
        needs="TASKS_RCU",
    )
    # free-time page checks are off unless a debug or hardening option asks for them
    out["module-bad-page"] = Case(_trigger("bad-page"), cmdline=("init_on_free=1",))
    # kmemleak reports an object unreferenced for 5 s, on a scan; verbose prints it to the
    # console, the debugfs file holds the same report without the prefix
    kmemleak = "/sys/kernel/debug/kmemleak"
    out["module-leak"] = Case(
        f"insmod {MODULE}; sh -c 'echo leak > {TRIGGER}'; sleep 6; echo scan > {kmemleak}; "
        f"echo scan > {kmemleak}; cat {kmemleak}; sleep 1",
        180.0,
        cmdline=("kmemleak.verbose=1",),
        fragments=(LEAK_AND_CORRUPTION,),
    )
    out["lkdtm-corrupt_list_del-bug"] = Case(
        f"echo CORRUPT_LIST_DEL > {DIRECT}; sleep 2", fragments=(LEAK_AND_CORRUPTION,)
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--tree", help="kernel tree (default: the default tree)")
    parser.add_argument("--out", default=str(OUT), help=f"log directory (default {OUT})")
    parser.add_argument("--accel", default="auto", choices=accel.CHOICES)
    args = parser.parse_args()
    tree = open_tree(Path(args.tree)) if args.tree else default_tree()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    builds: dict[tuple[Path, ...], tuple[Path, Path, accel.Accel, dict[str, str]]] = {}
    for name, case in cases().items():
        if args.cases and name not in args.cases:
            continue
        if case.fragments not in builds:
            fragments = kconfig.FragmentSet.for_scenarios(["gpio-sim"], list(case.fragments))
            record = build(configure(tree, fragments))
            image = Path(record.kernel_image)
            dotconfig = kconfig.parse_dotconfig((Path(record.build_dir) / ".config").read_text())
            module = record.modules["splat_selftest"]  # guest/modules: built with the kernel
            builds[case.fragments] = (image, module, accel.choose(args.accel, image), dotconfig)
        image, module, chosen, dotconfig = builds[case.fragments]
        if case.needs and dotconfig.get(case.needs) != "y":
            print(f"{name}: skipped, the build has no {case.needs}")
            continue
        command = case.command.replace(MODULE, str(module))
        spec = BootSpec(image, chosen, case.cmdline, plan=None, rwdirs=(), exec_command=command)
        raw = out / f"{name}.raw"
        guest = Guest(spec, raw)
        guest.start()
        deadline = time.monotonic() + case.timeout
        for _ in guest.events(lambda: deadline):  # noqa: B023 (consumed before the loop moves on)
            pass
        guest.stop()
        # keep the kernel's lines only: the first line is the host's vng command
        text = raw.read_text(errors="replace").split("\n", 1)[1]
        (out / f"{name}.log").write_text(text)
        raw.unlink()
        print(f"{name}: {len(text.splitlines())} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())

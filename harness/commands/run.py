"""`harness run`: build (or unpack an artifact), boot, run the scenarios, write the results.

Series and bisection run each of their sides or commits through
``run_scenarios`` too, so a side of a comparison is an ordinary run with its
junit.xml, summary.json and reproduce lines.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness import kcidb as kcidb_mod
from harness import report, shard
from harness.progress import say
from harness.results import Item, ItemResult, expand
from harness.runner import Runner
from harness.scenario import Scenario
from harness.stages import (
    ExecRequest,
    KernelSource,
    exec_runner,
    install_signal_handlers,
    kernel_source,
    load,
    measured_times,
    tree_in_use,
)
from harness.status import Exit, PipelineError


@dataclass(frozen=True)
class RunRequest(ExecRequest):
    repeat: int | None = None
    seed: int | None = None
    shard: shard.Shard | None = None  # run only this deterministic part of the items
    command: tuple[str, ...] = ()  # argv, for the report
    kcidb: str | None = None  # also write the results as a KCIDB document here
    kcidb_origin: str = kcidb_mod.DEFAULT_ORIGIN


@dataclass
class RunOutcome:
    results: list[ItemResult]
    out: Path
    exit_code: int
    info: report.RunInfo


class _NothingToRun(Exception):
    """Every selected scenario needs a kernel API the tree lacks: no build, no boot."""


def skip(items: list[Item], why: Mapping[str, str]) -> tuple[list[ItemResult], list[Item]]:
    """The items of scenarios in ``why`` as skipped results (each said once), and the rest."""
    for name, reason in why.items():
        say(f"skipped: {name}: {reason}")
    skipped = [
        ItemResult(i, status="skipped", error=f"skipped: {why[i.scenario.name]}")
        for i in items
        if i.scenario.name in why
    ]
    return skipped, [i for i in items if i.scenario.name not in why]


def modules_lost(scenarios: list[Scenario], errors: dict[str, str]) -> dict[str, str]:
    """Scenario name -> why: a helper module it loads did not build against this tree."""
    return {
        sc.name: f"helper module {module} did not build against this tree: {errors[module]}"
        for sc in scenarios
        for module in sc.helper_modules
        if module in errors
    }


def not_applicable(
    scenarios: list[Scenario], missing: Callable[[tuple[str, ...]], str | None]
) -> dict[str, str]:
    """Scenario name -> why the kernel cannot run it (a kernel API its tree lacks)."""
    return {sc.name: why for sc in scenarios if (why := missing(sc.needs))}


def exit_code_for(results: list[ItemResult], outside_splats: int = 0) -> int:
    return exit_code_for_statuses([r.status for r in results], outside_splats)


def exit_code_for_statuses(statuses: list[str], outside_splats: int = 0) -> int:
    """Skipped items (not applicable to this tree) neither pass nor fail a run, and a run
    of skipped items only tested nothing. A kernel report no item could take (a boot
    that ran none) fails the run all the same."""
    if "error" in statuses:
        return Exit.NO_VERDICT
    ran = [s for s in statuses if s != "skipped"]
    if not ran:
        return Exit.NOTHING_RAN
    return Exit.PASS if all(s == "pass" for s in ran) and not outside_splats else Exit.FAIL


def _program() -> str:
    """The harness command as the user can type it (not cli.py under `python -m`)."""
    exe = Path(sys.argv[0])
    return str(exe.resolve()) if exe.name == "harness" and exe.exists() else "harness"


def invocation(request: RunRequest) -> list[str]:
    """The command line this request came from, for the results' reproduce line."""
    args = list(request.command or sys.argv)
    return [_program(), *args[1:]]


def _run_args(
    request: RunRequest, scenarios: list[str], kernel: list[str], repeat: int, seed: int | None
) -> list[str]:
    """`harness run` with this kernel (--tree T or --kernel FILE), the request's fragments,
    accelerator, repeat and seed."""
    args = [_program(), "run", *scenarios, *kernel, "--accel", request.accel]
    if seed is not None:
        args += ["--seed", str(seed)]
    args += ["--repeat", str(repeat)]
    for path in request.kconfig:
        args += ["--kconfig", str(Path(path).resolve())]
    return args


def repro_command(request: RunRequest, item: Item, kernel: list[str], accel: str) -> str:
    """The command that re-runs exactly this item (kernel, fragments, accelerator, seed)."""
    args = _run_args(replace(request, accel=accel), [item.scenario.path], kernel, 1, item.seed)
    return shlex.join(args)


def commit_repro_command(
    request: RunRequest, worktree: Path, commit: str, scenarios: list[str], repeat: int
) -> str:
    """The command that re-runs one commit of a series or a bisection in the harness worktree."""
    checkout = ["git", "-C", str(worktree), "checkout", "-q", "--detach", commit]
    run = _run_args(request, scenarios, ["--tree", str(worktree)], repeat, request.seed)
    return f"{shlex.join(checkout)} && {shlex.join(run)}"


def shard_items(
    request: RunRequest,
    items: list[Item],
    info: report.RunInfo,
    times: shard.Timing,
    unfit: Mapping[str, str] | None = None,
) -> list[Item]:
    """This shard's items (all of them unsharded); the whole plan goes into the summary,
    so a merge knows what every shard should have reported. Items ``unfit`` for the
    kernel are still placed (each is a skipped testcase) but weigh nothing."""
    if request.shard is None:
        return items
    accel = shard.table_accel(request.accel)
    free = frozenset(unfit or ())
    plan = shard.assign(items, request.shard.total, times, free)
    mine = [i for i in items if plan[i.id] == request.shard.index]
    expected = {
        k: round(shard.expected_seconds([i for i in items if plan[i.id] == k], times, free), 1)
        for k in range(1, request.shard.total + 1)
    }
    info.shard = {
        "index": request.shard.index,
        "total": request.shard.total,
        "balanced_by": accel,
        "expected_s": expected,
        "plan": {i.id: plan[i.id] for i in items},
    }
    info.properties["shard"] = str(request.shard)
    say(
        f"shard {request.shard}: {len(mine)} of {len(items)} item(s), expected "
        f"{expected[request.shard.index]:.0f} s of the {accel.upper()} table "
        f"(shards: {', '.join(f'{v:.0f}' for v in expected.values())} s)"
    )
    return mine


def run_scenarios(request: RunRequest) -> RunOutcome:
    """Build (or unpack an artifact), boot, run, report: what `harness run` does.

    junit.xml and summary.json are written on every way out, interrupts included.
    """
    selected = load(request)  # bad input fails at once, not after waiting for the tree
    if request.shell:
        check_shell(request, selected)
    if request.kernel is not None:
        if request.tree is not None or request.kconfig:
            raise PipelineError(
                "--kernel boots a built artifact: --tree and --kconfig belong to "
                "`harness build --artifact`, not to a run of it"
            )
        return _run_scenarios(request, selected)
    with tree_in_use(request):
        return _run_scenarios(request, selected)


def check_shell(request: RunRequest, selected: list[Scenario]) -> None:
    """--shell hands one item's guest to a person at a terminal: refuse anything else."""
    if len(selected) != 1:
        names = ", ".join(sc.name for sc in selected)
        raise PipelineError(f"--shell runs one scenario; name one (these {len(selected)}: {names})")
    if request.shard is not None or (request.repeat or 1) != 1:
        raise PipelineError("--shell runs one item: drop --shard and --repeat")
    if not sys.stdin.isatty():
        raise PipelineError("--shell needs a terminal on stdin (run it from an interactive shell)")


@dataclass
class _Run:
    """One run's state between its stages: what was planned, what ran, how it ends."""

    request: RunRequest
    out: Path
    info: report.RunInfo
    source: KernelSource
    items: list[Item] = field(default_factory=list)  # this shard's items, in order
    skipped: list[ItemResult] = field(default_factory=list)
    to_run: list[Item] = field(default_factory=list)
    runner: Runner | None = None
    results: list[ItemResult] = field(default_factory=list)
    exit_code: int = Exit.NO_VERDICT
    why_none: str = "not run: the kernel was not built"


def _run_scenarios(request: RunRequest, selected: list[Scenario]) -> RunOutcome:
    started = time.monotonic()
    install_signal_handlers()
    out = Path(request.out_dir).resolve()
    shutil.rmtree(out / "boots", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    run = _Run(request, out, report.RunInfo(command=invocation(request)), kernel_source(request))
    run.info.properties.update(run.source.properties)
    runnable = _plan(run, selected)
    try:
        _execute(run, runnable)
    except _NothingToRun:
        run.exit_code = exit_code_for(run.skipped)
        if not run.items and request.shard is not None:
            say(f"shard {request.shard}: no items fall to this shard")
            run.exit_code = Exit.PASS
    except PipelineError as exc:
        say(f"error: {exc}")
        run.info.harness_error = str(exc)
        if exc.build_s is not None:
            run.info.build = {"failed": True, "duration_s": exc.build_s}
        run.exit_code = exc.code
        run.why_none = f"not run: {exc.summary}"
    except KeyboardInterrupt:
        run.info.interrupted = True
        run.exit_code = Exit.INTERRUPTED
        say("interrupted: QEMU stopped, writing partial results")
    finally:
        results = _write(run, started)
    return RunOutcome(results, out, run.exit_code, run.info)


def _plan(run: _Run, selected: list[Scenario]) -> list[Scenario]:
    """This shard's items, those the kernel cannot run skipped; the scenarios to build for."""
    request = run.request
    every = not_applicable(selected, run.source.missing)
    times = measured_times(request)
    expanded = expand(selected, 1 if request.shell else request.repeat, request.seed)
    run.items = shard_items(request, expanded, run.info, times, every)
    names = {i.scenario.name for i in run.items}
    unfit = {name: why for name, why in every.items() if name in names}
    run.skipped, fit = skip(run.items, unfit)
    run.to_run = shard.boot_order(fit, times)
    return [sc for sc in selected if sc.name in names and sc.name not in unfit]


def _execute(run: _Run, runnable: list[Scenario]) -> None:
    """Build (or take the artifact's kernel), boot, run; the exit status from the verdicts."""
    if not run.to_run:
        raise _NothingToRun
    record = run.source.kernel(run.request, runnable)
    run.info.build = record.to_json()
    shutil.copyfile(record.log, run.out / "build.log")
    run.info.properties.update(
        {
            "kernel_release": record.kernel_release,
            "config_hash": record.config_hash,
            "build_dir": record.build_dir,
        }
    )
    lost, run.to_run = skip(run.to_run, modules_lost(runnable, record.module_errors))
    run.skipped += lost
    if not run.to_run:
        raise _NothingToRun
    run.runner = exec_runner(run.request, record, run.out, run.info)
    run.results = run_until_enough(run.runner, run.to_run, run.request.enough)
    outside = sum(len(b.outside_splats) for b in run.runner.boots)
    run.exit_code = exit_code_for(run.results + run.skipped, outside)


def _write(run: _Run, started: float) -> list[ItemResult]:
    """junit.xml, summary.json and console.log on every way out; the results in order."""
    runner, info = run.runner, run.info
    if runner is not None and runner.guest is not None:
        runner.guest.stop()
    boots = runner.boots if runner else []
    results = run.results
    if runner is not None:
        results = runner.partial(run.to_run, "interrupted")
        info.properties["accelerator"] = f"{runner.accel.name}: {runner.accel.reason}"
        info.repro = {
            i.id: repro_command(run.request, i, run.source.repro_args, runner.accel.name)
            for i in run.items
        }
    elif not results:
        results = [ItemResult(i, error=run.why_none) for i in run.to_run]
    order = {i.id: n for n, i in enumerate(run.items)}
    results = sorted(results + run.skipped, key=lambda r: order[r.item.id])
    if boots:
        info.properties["qemu_command"] = boots[-1].qemu_command
    with (run.out / "console.log").open("w") as console:
        for boot in boots:
            console.write(f"# ===== boot {boot.index} ({boot.accel}; {boot.why}) =====\n")
            console.write(Path(boot.console).read_text(errors="replace"))
    info.duration_s = round(time.monotonic() - started, 1)
    report.write(run.out, results, boots, info)
    if run.request.kcidb and not run.request.placed:  # a series writes its sides' itself
        write_kcidb(Path(run.request.kcidb), run.request.kcidb_origin, run.out)
    for line in report.table(results):
        say(line)
    for line in error_lines(results, run.out):
        say(line)
    outside = sum(len(b.outside_splats) for b in boots)
    say(summary_line(run.out, results, outside))  # the last line: what failed or lacks a verdict
    return results


def write_kcidb(
    path: Path, origin: str, *runs: tuple[Path, kcidb_mod.Patchset | None] | Path
) -> None:
    """Runs' summary.json (``runs``: their directories, each with the patchset its
    checkout carries, if any) as one KCIDB document (validated) at ``path``."""
    doc = kcidb_mod.Document(origin)
    for run in runs:
        out, patchset = run if isinstance(run, tuple) else (run, None)
        kcidb_mod.add_run(doc, json.loads((out / "summary.json").read_text()), out, patchset)
    kcidb_mod.write(path, doc)
    say(f"kcidb: {path} ({len(doc.tests)} test(s), {len(doc.issues)} issue(s))")


def run_until_enough(
    runner: Runner, items: list[Item], enough: Callable[[list[ItemResult]], str | None] | None
) -> list[ItemResult]:
    """Run the items boot by boot; once ``enough`` names a reason after a boot (a
    bisection step has its verdict), the items left are skipped with that reason."""
    with contextlib.closing(runner.boot_by_boot(items)) as boots:
        for finished in boots:
            stop = enough(finished) if enough else None
            left = [i for i in items if i.id not in runner.finished]
            if stop and left:
                say(f"not running {len(left)} more item(s): {stop}")
                for item in left:
                    runner.results[item.id].error = f"not run: {stop}"
                    runner.results[item.id].status = "skipped"
                break
    return [runner.results[i.id] for i in items]


def summary_line(out: Path, results: list[ItemResult], outside_splats: int = 0) -> str:
    """The run's last word: counts, and the names of what failed or got no verdict
    (``outside_splats``: kernel reports in a boot that had no item to take them)."""
    parts = []
    for status in ("pass", "fail", "error", "skipped"):
        ids = [r.item.id for r in results if r.status == status]
        if status == "skipped" and not ids:
            continue
        named = f" ({', '.join(ids)})" if ids and status != "pass" else ""
        parts.append(f"{status} {len(ids)}{named}")
    if exit_code_for(results) == Exit.NOTHING_RAN:
        parts.append("nothing was tested")
    if outside_splats:
        parts.append(f"{outside_splats} kernel report(s) no item took: the run fails")
    return f"results: {out}/junit.xml  " + ", ".join(parts)


def error_lines(results: list[ItemResult], out: Path) -> list[str]:
    """For each item without a verdict: what went wrong and where its console is."""
    lines = []
    for r in results:
        if r.status != "error":
            continue
        first = (r.error or "no verdict").splitlines()[0]
        console = r.console or out / "console.log"
        lines.append(f"no verdict: {r.item.id}: {first} (console: {console})")
    return lines

"""Command line: harness run | build | config | check | list | log."""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path

import click

from harness import accel as accel_mod
from harness import kconfig, report, splats
from harness.build import BuildError, ConfigResult, build, configure
from harness.progress import say
from harness.run import Item, Runner, expand
from harness.scenario import Scenario, load_scenarios, resolve
from harness.tree import KernelTree, TreeError, default_tree, open_tree
from harness.yamlnodes import SchemaErrors

TREE_HELP = (
    "kernel source tree (git or plain); "
    "default: Debian's linux-source-6.12, unpacked into the cache"
)
KCONFIG_HELP = (
    "extra kconfig fragment applied last (repeatable), e.g. one option a patch series needs"
)


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _scenarios(names: tuple[str, ...]) -> list[Scenario]:
    try:
        return load_scenarios(resolve(list(names)))
    except SchemaErrors as exc:
        _fail(f"scenario check failed:\n{exc}")
    raise AssertionError


def _tree(path: str | None) -> KernelTree:
    try:
        return open_tree(Path(path)) if path else default_tree()
    except TreeError as exc:
        _fail(str(exc))
    raise AssertionError


def _configure(tree: KernelTree, scenarios: list[Scenario], extra: tuple[str, ...]) -> ConfigResult:
    names = [name for sc in scenarios for name in sc.kconfig]
    for path in extra:
        if not Path(path).is_file():
            _fail(f"--kconfig {path}: no such file")
    try:
        fragments = kconfig.FragmentSet.for_scenarios(names, [Path(p) for p in extra])
        return configure(tree, fragments)
    except kconfig.FragmentError as exc:
        _fail(str(exc))
    except BuildError as exc:
        _fail(str(exc), code=3)
    raise AssertionError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Kernel object-lifetime regression harness.

    Builds a KASAN/lockdep kernel, boots it in QEMU (virtme-ng), runs YAML
    scenarios that remove providers while consumers use them, and reports
    kernel splats and broken expectations as JUnit.

    \b
    Quick start:
      harness run                      # all scenarios, default tree
      harness run gpio-sim-plug-cycle --tree ~/linux
      harness log results/console.log  # triage any console log
    """


@main.command()
@click.argument("scenarios", nargs=-1)
@click.option("--tree", help=TREE_HELP)
@click.option("--kconfig", "extra", multiple=True, help=KCONFIG_HELP)
def config(scenarios: tuple[str, ...], tree: str | None, extra: tuple[str, ...]) -> None:
    """Resolve and check the kernel config without building.

    Prints the fragment list and whether every requested option survived
    olddefconfig; a dropped option is shown with its `depends on` chain.

    \b
    Example: harness config --tree ~/linux gpio-sim-plug-cycle
    """
    result = _configure(_tree(tree), _scenarios(scenarios), extra)
    click.echo(result.report())
    click.echo(f".config: {result.dotconfig}")
    sys.exit(1 if result.mismatches else 0)


def _build(tree: KernelTree, scenarios: list[Scenario], extra: tuple[str, ...]):
    result = _configure(tree, scenarios, extra)
    if result.mismatches:
        _fail(result.report(), code=3)
    try:
        return result, build(result)
    except BuildError as exc:
        _fail(str(exc), code=3)
    raise AssertionError


@main.command(name="build")
@click.argument("scenarios", nargs=-1)
@click.option("--tree", help=TREE_HELP)
@click.option("--kconfig", "extra", multiple=True, help=KCONFIG_HELP)
def build_cmd(scenarios: tuple[str, ...], tree: str | None, extra: tuple[str, ...]) -> None:
    """Configure, check and build the kernel for SCENARIOS (default: all).

    \b
    Example: harness build --tree ~/linux --kconfig my-series.config
    """
    _, record = _build(_tree(tree), _scenarios(scenarios), extra)
    click.echo(json.dumps(record.to_json(), indent=1))


@main.command(name="check")
@click.argument("files", nargs=-1)
def check_cmd(files: tuple[str, ...]) -> None:
    """Validate scenario files without booting (default: all built-in ones).

    \b
    Example: harness check scenarios/my-new-scenario.yaml
    """
    scenarios = _scenarios(files)
    for sc in scenarios:
        click.echo(f"ok  {sc.path}")


@main.command(name="list")
def list_cmd() -> None:
    """List built-in scenarios with their one-line summary and kconfig fragments."""
    for sc in _scenarios(()):
        click.echo(
            f"{sc.name}\n    {sc.summary}\n    kconfig: {', '.join(sc.kconfig) or '(base only)'}"
            f"   cmdline: {' '.join(sc.cmdline) or '(default)'}"
        )


@main.command(name="log")
@click.argument("logfile", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print splats as JSON")
def log_cmd(logfile: str, as_json: bool) -> None:
    """Find kernel splats in any console log (a CI artifact, a dmesg dump).

    Exit status 1 if any splat was found.

    \b
    Example: harness log results/console.log --json
    """
    found = splats.parse(Path(logfile).read_text(errors="replace"))
    if as_json:
        click.echo(json.dumps([s.to_json() for s in found], indent=1))
    else:
        for s in found:
            where = f" [scenario {s.scenario}]" if s.scenario else ""
            count = f" x{s.count}" if s.count > 1 else ""
            click.echo(f"{logfile}:{s.first_line}: {s.kind}: {s.title}{count}{where}")
        click.echo(f"{len(found)} splat(s)")
    sys.exit(1 if found else 0)


def _repro(item: Item, tree: KernelTree, extra: tuple[str, ...], accel: str) -> str:
    exe = Path(sys.argv[0])
    program = str(exe.resolve()) if exe.name == "harness" and exe.exists() else "harness"
    args = [
        program,
        "run",
        item.scenario.path,
        "--tree",
        str(tree.path),
        "--accel",
        accel,
        "--seed",
        str(item.seed),
        "--repeat",
        "1",
    ]
    for path in extra:
        args += ["--kconfig", str(Path(path).resolve())]
    return shlex.join(args)


def _sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


@main.command()
@click.argument("scenarios", nargs=-1)
@click.option("--tree", help=TREE_HELP)
@click.option("--kconfig", "extra", multiple=True, help=KCONFIG_HELP)
@click.option("--out", "out_dir", default="results", show_default=True, help="results directory")
@click.option(
    "--accel",
    type=click.Choice(["auto", "kvm", "tcg"]),
    default="auto",
    show_default=True,
    help="auto probes KVM and falls back to TCG",
)
@click.option("--repeat", type=int, help="override every scenario's repeat count")
@click.option("--seed", type=int, help="override the scenarios' seed")
@click.option(
    "--timeout",
    "run_timeout",
    default=3600.0,
    show_default=True,
    help="whole-run timeout in seconds (boots included, build excluded)",
)
def run(
    scenarios: tuple[str, ...],
    tree: str | None,
    extra: tuple[str, ...],
    out_dir: str,
    accel: str,
    repeat: int | None,
    seed: int | None,
    run_timeout: float,
) -> None:
    """Build, boot and run SCENARIOS (names or YAML files; default: all built-in).

    Leaves junit.xml, summary.json, console.log and build.log in --out, also
    when interrupted. Exit status: 0 all passed, 1 a scenario failed or
    errored, 2 bad input, 3 configuration or build failed.

    \b
    Examples:
      harness run
      harness run gpio-sim-remove-under-readers --tree ~/linux --accel tcg
      harness run scenarios/gpio-sim-plug-cycle.yaml --repeat 5 --out /tmp/r
    """
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGHUP, _sigterm)
    # a shell starts background jobs with SIGINT ignored; Ctrl-C must still stop QEMU
    signal.signal(signal.SIGINT, signal.default_int_handler)
    selected = _scenarios(scenarios)
    out = Path(out_dir).resolve()
    shutil.rmtree(out / "boots", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    items = expand(selected, repeat, seed)
    info = report.RunInfo(command=sys.argv)
    kernel_tree = _tree(tree)
    info.properties.update(
        {
            "tree": str(kernel_tree.path),
            "tree_version": kernel_tree.version,
            "tree_commit": kernel_tree.git_commit or "(not git)",
        }
    )
    runner: Runner | None = None
    exit_code = 1
    try:
        config_result, record = _build(kernel_tree, selected, extra)
        info.build = record.to_json()
        shutil.copyfile(record.log, out / "build.log")
        info.properties.update(
            {
                "kernel_release": record.kernel_release,
                "config_hash": record.config_hash,
                "build_dir": record.build_dir,
            }
        )
        chosen = accel_mod.choose(accel)
        say(f"accel: {chosen.name} ({chosen.reason})")
        info.properties["accelerator"] = f"{chosen.name}: {chosen.reason}"
        info.repro = {i.id: _repro(i, kernel_tree, extra, chosen.name) for i in items}
        runner = Runner(
            Path(record.kernel_image),
            chosen,
            out,
            time.monotonic() + run_timeout,
            modules=record.modules,
        )
        results = runner.run(items)
        exit_code = 0 if all(r.status == "pass" for r in results) else 1
    except KeyboardInterrupt:
        info.interrupted = True
        exit_code = 130
        say("interrupted: QEMU stopped, writing partial results")
    finally:
        if runner is not None and runner.guest is not None:
            runner.guest.stop()
        boots = runner.boots if runner else []
        if boots:
            info.properties["qemu_command"] = boots[0].qemu_command
        results = runner.partial(items, "interrupted") if runner else []
        if runner is None and not results:
            from harness.run import ItemResult

            results = [ItemResult(i, error="not run: the kernel was not built") for i in items]
        with (out / "console.log").open("w") as console:
            for boot in boots:
                console.write(f"# ===== boot {boot.index} =====\n")
                console.write(Path(boot.console).read_text(errors="replace"))
        info.duration_s = round(time.monotonic() - started, 1)
        report.write(out, results, boots, info)
        counts = {s: sum(1 for r in results if r.status == s) for s in ("pass", "fail", "error")}
        say(
            f"results: {out}/junit.xml  pass {counts['pass']}, fail {counts['fail']}, "
            f"error {counts['error']}"
        )
    sys.exit(exit_code)


if __name__ == "__main__":
    main()

"""Command line: harness run | build | config | check | list | log."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from harness import accel, pipeline, splats, textfile

TREE_HELP = (
    "kernel source tree (git or plain); "
    "default: Debian's linux-source-6.12, unpacked into the cache"
)
KCONFIG_HELP = (
    "extra kconfig fragment applied last (repeatable), e.g. one option a patch series needs"
)


def _fail(message: str, code: int = pipeline.EXIT_BAD_INPUT) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@contextmanager
def _stage() -> Iterator[None]:
    """A pipeline stage's error becomes a message and its exit status, never a traceback."""
    try:
        yield
    except pipeline.PipelineError as exc:
        _fail(str(exc), exc.code)
    except textfile.TextFileError as exc:
        _fail(str(exc))


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
    request = pipeline.ConfigRequest(tree=tree, kconfig=extra, scenarios=scenarios)
    with _stage():
        selected = pipeline.load(request)
        result = pipeline.config_kernel(request, pipeline.open_kernel_tree(request), selected)
    click.echo(result.report())
    click.echo(f".config: {result.dotconfig}")
    sys.exit(1 if result.mismatches else 0)


@main.command(name="build")
@click.argument("scenarios", nargs=-1)
@click.option("--tree", help=TREE_HELP)
@click.option("--kconfig", "extra", multiple=True, help=KCONFIG_HELP)
def build_cmd(scenarios: tuple[str, ...], tree: str | None, extra: tuple[str, ...]) -> None:
    """Configure, check and build the kernel for SCENARIOS (default: all).

    \b
    Example: harness build --tree ~/linux --kconfig my-series.config
    """
    request = pipeline.BuildRequest(tree=tree, kconfig=extra, scenarios=scenarios)
    with _stage():
        selected = pipeline.load(request)
        _, record = pipeline.build_kernel(request, pipeline.open_kernel_tree(request), selected)
    click.echo(json.dumps(record.to_json(), indent=1))


@main.command(name="check")
@click.argument("files", nargs=-1)
def check_cmd(files: tuple[str, ...]) -> None:
    """Validate scenario files without booting (default: all built-in ones).

    \b
    Example: harness check scenarios/my-new-scenario.yaml
    """
    with _stage():
        scenarios = pipeline.load(pipeline.ConfigRequest(scenarios=files))
    for sc in scenarios:
        click.echo(f"ok  {sc.path}")


@main.command(name="list")
def list_cmd() -> None:
    """List built-in scenarios with their one-line summary and kconfig fragments."""
    with _stage():
        scenarios = pipeline.load(pipeline.ConfigRequest())
    for sc in scenarios:
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
    with _stage():
        found = splats.parse(textfile.read_log(Path(logfile)))
    if as_json:
        click.echo(json.dumps([s.to_json() for s in found], indent=1))
    else:
        for s in found:
            where = f" [scenario {s.scenario}]" if s.scenario else ""
            count = f" x{s.count}" if s.count > 1 else ""
            click.echo(f"{logfile}:{s.first_line}: {s.kind}: {s.title}{count}{where}")
        click.echo(f"{len(found)} splat(s)")
    sys.exit(1 if found else 0)


@main.command()
@click.argument("scenarios", nargs=-1)
@click.option("--tree", help=TREE_HELP)
@click.option("--kconfig", "extra", multiple=True, help=KCONFIG_HELP)
@click.option("--out", "out_dir", default="results", show_default=True, help="results directory")
@click.option(
    "--accel",
    type=click.Choice(accel.CHOICES),
    envvar="HARNESS_ACCEL",
    show_envvar=True,
    default="auto",
    show_default=True,
    help="auto: KVM if the kernel under test boots under it (probed), else TCG; "
    "a KVM boot that prints nothing falls back to TCG",
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
    when interrupted.

    \b
    Exit status:
      0  every scenario ran and passed
      1  every scenario ran (has a verdict); some failed
      2  bad input (scenario file, option, kconfig fragment)
      3  configuration or kernel build failed
      4  some scenarios got no verdict (no boot, no guest result, timeout,
         harness problem): the last lines say which, with the console log

    \b
    Examples:
      harness run
      harness run gpio-sim-remove-under-readers --tree ~/linux --accel tcg
      HARNESS_ACCEL=tcg harness run scenarios/gpio-sim-plug-cycle.yaml --repeat 5 --out /tmp/r
    """
    request = pipeline.RunRequest(
        tree=tree,
        kconfig=extra,
        scenarios=scenarios,
        accel=accel,
        out_dir=out_dir,
        run_timeout=run_timeout,
        repeat=repeat,
        seed=seed,
        command=tuple(sys.argv),
    )
    with _stage():
        outcome = pipeline.run_scenarios(request)
    sys.exit(outcome.exit_code)


if __name__ == "__main__":
    main()

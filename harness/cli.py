"""Command line: harness run | series | bisect | build | merge | durations | config | check |
list | log | fetch."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from harness import accel, debsource, kapi, kcidb, report, shard, splats, stages, symbols, textfile
from harness import artifact as artifact_mod
from harness import scenario as scenario_mod
from harness import tree as tree_mod
from harness.commands import bisection as bisect_mod
from harness.commands import merge as merge_mod
from harness.commands import run as run_command
from harness.commands import series as series_mod
from harness.status import Exit, PipelineError
from harness.yamlnodes import SchemaErrors

TREE_HELP = (
    "kernel source tree (git or plain); "
    "default: Debian's linux-source-6.12, unpacked into the cache"
)
KCONFIG_HELP = (
    "extra kconfig fragment applied last (repeatable), e.g. one option a patch series needs"
)


def _fail(message: str, code: int = Exit.BAD_INPUT) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@contextmanager
def _stage() -> Iterator[None]:
    """A pipeline stage's error becomes a message and its exit status, never a traceback."""
    try:
        yield
    except PipelineError as exc:
        _fail(str(exc), exc.code)
    except textfile.TextFileError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted", Exit.INTERRUPTED)


def _kcidb_origin(value: str) -> str:
    try:
        return kcidb.check_origin(value)
    except kcidb.KcidbError as exc:
        raise click.BadParameter(str(exc)) from exc


KCIDB_FILE_OPTION = click.option(
    "--kcidb",
    "kcidb_file",
    type=click.Path(dir_okay=False),
    help="also write the results as a KCIDB document (KernelCI's schema, validated)",
)
KCIDB_ORIGIN_OPTION = click.option(
    "--kcidb-origin",
    default=kcidb.DEFAULT_ORIGIN,
    show_default=True,
    callback=lambda ctx, param, value: _kcidb_origin(value),
    help="the CI system's name in KCIDB ids (lower case, digits, _)",
)


def _run_fields(
    tree: str | None,
    extra: tuple[str, ...],
    scenarios: tuple[str, ...],
    accel: str,
    out_dir: str,
    run_timeout: float,
    repeat: int | None,
    seed: int | None,
) -> dict:
    """The run request's fields, shared by every command that runs scenarios."""
    return {
        "tree": tree,
        "kconfig": extra,
        "scenarios": scenarios,
        "accel": accel,
        "out_dir": out_dir,
        "run_timeout": run_timeout,
        "repeat": repeat,
        "seed": seed,
        "command": tuple(sys.argv),
    }


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


@main.command(name="config")
@click.argument("scenarios", nargs=-1)
@click.option("--tree", help=TREE_HELP)
@click.option("--kconfig", "extra", multiple=True, help=KCONFIG_HELP)
def config_cmd(scenarios: tuple[str, ...], tree: str | None, extra: tuple[str, ...]) -> None:
    """Resolve and check the kernel config without building.

    Prints the fragment list and whether every requested option survived
    olddefconfig; a dropped option is shown with its `depends on` chain.

    \b
    Example: harness config --tree ~/linux gpio-sim-plug-cycle
    """
    request = stages.ConfigRequest(tree=tree, kconfig=extra, scenarios=scenarios)
    with _stage():
        selected = stages.load(request)
        with stages.tree_in_use(request):
            tree = stages.open_kernel_tree(request)
            result = stages.config_kernel(request, tree, selected)
    click.echo(result.report())
    click.echo(f".config: {result.dotconfig}")
    sys.exit(1 if result.mismatches else 0)


@main.command(name="build")
@click.argument("scenarios", nargs=-1)
@click.option("--tree", help=TREE_HELP)
@click.option("--kconfig", "extra", multiple=True, help=KCONFIG_HELP)
@click.option(
    "--artifact",
    type=click.Path(dir_okay=False),
    help="also write the kernel as one file (image, helper modules, .config, build record) "
    "for `harness run --kernel FILE` on machines without the tree",
)
def build_cmd(
    scenarios: tuple[str, ...], tree: str | None, extra: tuple[str, ...], artifact: str | None
) -> None:
    """Configure, check and build the kernel for SCENARIOS (default: all).

    Prints the build record (JSON).

    \b
    Examples:
      harness build --tree ~/linux --kconfig my-series.config
      harness build --tree . --artifact kernel.tar.gz     # a CI build job
    """
    request = stages.BuildRequest(tree=tree, kconfig=extra, scenarios=scenarios)
    with _stage():
        selected = stages.load(request)
        with stages.tree_in_use(request):
            tree = stages.open_kernel_tree(request)
            _, record = stages.build_kernel(request, tree, selected)
            if artifact is not None:
                written = artifact_mod.pack(record, tree.path, Path(artifact))
                click.echo(f"artifact: {written} ({written.stat().st_size >> 20} MiB)", err=True)
    click.echo(json.dumps(record.to_json(), indent=1))


TREE_FOR_APIS = click.option(
    "--tree",
    type=click.Path(exists=True, file_okay=False),
    help="say whether this tree has the kernel APIs scenarios need, and (check) hold each "
    "covers: entry to what it names there (default: the default tree, if unpacked)",
)


@main.command(name="check")
@click.argument("files", nargs=-1)
@TREE_FOR_APIS
def check_cmd(files: tuple[str, ...], tree: str | None) -> None:
    """Validate scenario files without booting (default: all built-in ones).

    \b
    Example: harness check scenarios/my-new-scenario.yaml
    """
    where = stages.api_tree(tree)
    try:  # with the tree, so that a covers entry is checked against what it names
        scenarios = scenario_mod.load_scenarios(scenario_mod.resolve(list(files)), where)
    except SchemaErrors as exc:
        _fail(f"scenario check failed:\n{exc}")
    for sc in scenarios:
        needs = f"  needs {kapi.explain(sc.needs, where)}" if sc.needs else ""
        click.echo(f"ok  {sc.path}{needs}")


@main.command(name="list")
@TREE_FOR_APIS
def list_cmd(tree: str | None) -> None:
    """List built-in scenarios: summary, kconfig fragments, command line, covered sources,
    kernel APIs they need."""
    with _stage():
        scenarios = stages.load(stages.ConfigRequest())
    where = stages.api_tree(tree)
    for sc in scenarios:
        covers = ", ".join(sc.covers) or "(nothing listed: --affected never selects it)"
        needs = f"\n    needs: {kapi.explain(sc.needs, where)}" if sc.needs else ""
        click.echo(
            f"{sc.name}\n    {sc.summary}\n    kconfig: {', '.join(sc.kconfig) or '(base only)'}"
            f"   cmdline: {' '.join(sc.cmdline) or '(default)'}"
            f"\n    covers: {covers}{needs}"
        )


@main.command(name="log")
@click.argument("logfile", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print splats as JSON")
@click.option(
    "--vmlinux",
    type=click.Path(exists=True, dir_okay=False),
    help="the build's vmlinux (with debug info): print each report with file:line per frame",
)
@click.option(
    "--modules",
    type=click.Path(exists=True, file_okay=False),
    help="a directory of the build's .ko files, for frames in modules",
)
@click.option(
    "--kernel",
    type=click.Path(dir_okay=False),
    help="the artifact (`harness build --artifact`) the log's kernel came from: its vmlinux "
    "and modules",
)
def log_cmd(
    logfile: str, as_json: bool, vmlinux: str | None, modules: str | None, kernel: str | None
) -> None:
    """Find kernel splats in any console log (a CI artifact, a dmesg dump).

    Exit status 1 if any splat was found.

    \b
    Examples:
      harness log results/console.log --json
      harness log console.log --vmlinux ~/linux/vmlinux   # reports with source lines
    """
    with _stage():
        found = splats.parse(textfile.read_log(Path(logfile)))
        objects = _log_objects(vmlinux, modules, kernel)
    for s in found if objects is not None else ():
        s.excerpt = symbols.decode_text(s.excerpt, objects)
    if as_json:
        click.echo(json.dumps([s.to_json() for s in found], indent=1))
    else:
        for s in found:
            where = f" [scenario {s.scenario}]" if s.scenario else ""
            count = f" x{s.count}" if s.count > 1 else ""
            click.echo(f"{logfile}:{s.first_line}: {s.kind}: {s.title}{count}{where}")
            if objects is not None:
                click.echo(report.trimmed(s.excerpt, lines=40))
        click.echo(f"{len(found)} splat(s)")
    sys.exit(1 if found else 0)


def _log_objects(
    vmlinux: str | None, modules: str | None, kernel: str | None
) -> symbols.Objects | None:
    if kernel is not None:
        if vmlinux or modules:
            raise PipelineError("--kernel brings its vmlinux and modules: give one or the other")
        try:
            record = artifact_mod.open_artifact(Path(kernel)).record
        except artifact_mod.ArtifactError as exc:
            raise PipelineError(str(exc)) from exc
        if (found := symbols.for_build(record.build_dir, record.modules)) is None:
            raise PipelineError(
                f"--kernel {kernel}: the artifact has no vmlinux with line tables (its build "
                "had no CONFIG_DEBUG_INFO)"
            )
        return found
    if vmlinux is None:
        if modules is not None:
            raise PipelineError("--modules goes with --vmlinux (the build both came from)")
        return None
    kos = {ko.stem.replace("-", "_"): ko for ko in Path(modules).rglob("*.ko")} if modules else {}
    objects = symbols.Objects(Path(vmlinux), kos)
    if not objects.has_lines():
        raise PipelineError(
            f"{vmlinux} has no line tables (.debug_line): build with CONFIG_DEBUG_INFO "
            "(the harness's kconfigs/debug.config has it)"
        )
    return objects


@main.command(name="fetch")
@click.argument("kernel", type=click.Choice(list(debsource.MATRIX)))
def fetch_cmd(kernel: str) -> None:
    """Fetch Debian's linux-source package of KERNEL once and unpack it as a tree; print
    its path (for --tree).

    The package comes through a private apt setup in the cache (the host's apt
    configuration is not changed); the tree is a git repository with one commit,
    like the default tree, so series and bisection work on it.

    \b
    Example: harness run --tree "$(harness fetch 7.3)"
    """
    try:
        found = tree_mod.default_tree(debsource.tarball(debsource.package(kernel)))
    except (debsource.SourceError, tree_mod.TreeError) as exc:
        _fail(str(exc), Exit.BUILD)
    click.echo(found.path)


ACCEL_OPTION = click.option(
    "--accel",
    type=click.Choice(accel.CHOICES),
    envvar="HARNESS_ACCEL",
    show_envvar=True,
    default="auto",
    show_default=True,
    help="auto: KVM if the kernel under test boots under it (probed), else TCG; "
    "a KVM boot that prints nothing falls back to TCG",
)
REPO_OPTION = click.option(
    "--tree",
    help="git repository (never checked out or modified: the harness works in its own "
    "worktree in the cache); default: Debian's linux-source-6.12, a repository once",
)
SEED_OPTION = click.option("--seed", type=int, help="override the scenarios' seed")
TIMEOUT_OPTION = click.option(
    "--timeout",
    "run_timeout",
    default=3600.0,
    show_default=True,
    help="timeout in seconds of each side's run (boots included, build excluded)",
)


def _shard(ctx: click.Context, param: click.Parameter, value: str | None) -> shard.Shard | None:
    if value is None:
        return None
    try:
        return shard.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@main.command(name="run")
@click.argument("scenarios", nargs=-1)
@click.option("--tree", help=TREE_HELP)
@click.option("--kconfig", "extra", multiple=True, help=KCONFIG_HELP)
@click.option(
    "--kernel",
    type=click.Path(dir_okay=False),
    help="boot this artifact of `harness build --artifact` instead of building (no tree needed)",
)
@click.option(
    "--shard",
    "shard_spec",
    callback=_shard,
    metavar="K/N",
    help="run only the K-th of N parts of the items (K from 1, as CI_NODE_INDEX), balanced "
    "by scenarios/durations.json; `harness merge` joins the parts",
)
@click.option("--out", "out_dir", default="results", show_default=True, help="results directory")
@ACCEL_OPTION
@click.option(
    "--repeat",
    type=click.IntRange(1, scenario_mod.REPEAT_MAX),
    help="override every scenario's repeat count",
)
@SEED_OPTION
@TIMEOUT_OPTION
@click.option(
    "--shell",
    type=click.Choice(["after", "before"]),
    is_flag=False,
    flag_value="after",
    help="then a shell in the guest on the serial console, the fixtures as the scenario left "
    "them (--shell=before: set up, stop before the first removal); `exit` tears down",
)
@KCIDB_FILE_OPTION
@KCIDB_ORIGIN_OPTION
def run_cmd(
    scenarios: tuple[str, ...],
    tree: str | None,
    extra: tuple[str, ...],
    kernel: str | None,
    shard_spec: shard.Shard | None,
    out_dir: str,
    accel: str,
    repeat: int | None,
    seed: int | None,
    run_timeout: float,
    shell: str | None,
    kcidb_file: str | None,
    kcidb_origin: str,
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
      harness run --kernel kernel.tar.gz --shard 2/4 --out shard-2   # a CI test job
      harness run nvmem-in-kernel-consumer-unbind --tree ~/linux --shell  # then look around
    """
    request = run_command.RunRequest(
        **_run_fields(tree, extra, scenarios, accel, out_dir, run_timeout, repeat, seed),
        kernel=kernel,
        shard=shard_spec,
        shell=shell or "",
        kcidb=kcidb_file,
        kcidb_origin=kcidb_origin,
    )
    with _stage():
        outcome = run_command.run_scenarios(request)
    sys.exit(outcome.exit_code)


@main.command(name="merge")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", "out_dir", required=True, help="directory for the merged results")
@KCIDB_FILE_OPTION
@KCIDB_ORIGIN_OPTION
def merge_cmd(
    dirs: tuple[str, ...], out_dir: str, kcidb_file: str | None, kcidb_origin: str
) -> None:
    """One junit.xml and summary.json from the result DIRS of `harness run --shard K/N`.

    Every testcase appears once, with the shard it came from; an item that no
    shard reported (a shard died or was left out) is an error testcase.

    \b
    Exit status: as for `harness run` (0 pass, 1 some failed, 2 bad input,
    4 some item has no verdict, a missing shard's included).

    \b
    Example: harness merge shard-1 shard-2 shard-3 shard-4 --out results
    """
    try:
        code = merge_mod.run_merge([Path(d) for d in dirs], Path(out_dir), list(sys.argv))
    except merge_mod.MergeError as exc:
        _fail(str(exc))
    if kcidb_file:
        run_command.write_kcidb(Path(kcidb_file), kcidb_origin, Path(out_dir))
    sys.exit(code)


@main.command(name="durations")
@click.argument("summaries", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--file",
    "table",
    type=click.Path(dir_okay=False),
    default=str(shard.DURATIONS_FILE),
    show_default=True,
    help="the durations table to update",
)
def durations_cmd(summaries: tuple[str, ...], table: str) -> None:
    """Refresh the per-scenario durations --shard balances by, from runs' summary.json.

    Each item with a verdict counts under the accelerator its boot used; boots
    give the seconds to 'ready'. Scenarios the summaries do not cover keep
    their figures.

    \b
    Example: harness durations results/summary.json && git diff scenarios/durations.json
    """
    with _stage():
        read = [shard.read_summary(Path(p)) for p in summaries]
    try:
        old = shard.load_durations(Path(table))
    except ValueError as exc:
        _fail(str(exc))
    fresh = shard.measured(read)
    if not fresh:
        _fail("no item with a verdict in " + ", ".join(summaries) + ": nothing to measure")
    Path(table).write_text(json.dumps(shard.refreshed(old, fresh), indent=1) + "\n")
    for accel_name, entry in fresh.items():
        click.echo(
            f"{accel_name}: {len(entry['scenarios'])} scenario(s), "
            f"boot {entry.get('boot_s', '?')} s -> {table}"
        )


@main.command(name="series")
@click.argument("scenarios", nargs=-1)
@click.option("--base", required=True, help="the commit the series applies to (HEAD of --tree ok)")
@click.option(
    "--series",
    "series_path",
    help="an mbox (git format-patch --stdout), a directory of *.patch, a mailing-list thread "
    "(b4 mbox, lore's t.mbox.gz: b4 am takes its newest version, trailers applied) or a "
    "message-id/lore URL (b4 fetches it); applied with git am --3way on --base",
)
@click.option(
    "--series-version",
    type=click.IntRange(min=1),
    help="the version of a thread's series to apply (default: the newest)",
)
@click.option("--head", help="compare --base with this commit instead of applying a series")
@REPO_OPTION
@click.option("--kconfig", "extra", multiple=True, help=KCONFIG_HELP)
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=series_mod.DEFAULT_REPEAT,
    show_default=True,
    help="runs of each scenario on each side, same seeds on both",
)
@click.option(
    "--affected",
    is_flag=True,
    help="run only the scenarios whose covers: meet the files the series touches",
)
@click.option("--out", "out_dir", default="results", show_default=True, help="results directory")
@ACCEL_OPTION
@SEED_OPTION
@TIMEOUT_OPTION
@KCIDB_FILE_OPTION
@KCIDB_ORIGIN_OPTION
def series_cmd(
    scenarios: tuple[str, ...],
    base: str,
    series_path: str | None,
    series_version: int | None,
    head: str | None,
    tree: str | None,
    extra: tuple[str, ...],
    repeat: int,
    affected: bool,
    out_dir: str,
    accel: str,
    seed: int | None,
    run_timeout: float,
    kcidb_file: str | None,
    kcidb_origin: str,
) -> None:
    """What a patch series changes: SCENARIOS on --base and on base + series.

    Both sides build in one harness worktree (head incrementally after base)
    and run the same items with the same seeds. Per scenario: fixed (likely
    fixed), regressed, still failing, changed, flaky, unchanged pass or error;
    fixed and regressed only once the clean side ran often enough that luck
    is at most 1 % likely (a side is run more for it, up to 10 runs).
    --out gets base/ and head/ (each a full `harness run` result) and, on
    top, junit.xml, summary.json and report.md (paste it into a reply).

    \b
    Exit status:
      0  nothing regressed
      1  something regressed (a new splat on head, or a pass turned fail)
      2  bad input (option, scenario, revision, series file)
      3  the series does not apply, or configuration or build failed
      4  a scenario got no verdict on a side (boot, fixture, timeout)

    \b
    Examples:
      harness series --base HEAD --series fix.mbox
      harness series --base HEAD --series t.mbox.gz --series-version 2 --affected
      harness series nvmem-unbind-at24-during-read --tree ~/linux --base v6.12 --head my-fix
      harness series --base HEAD --series patches/ --affected --repeat 5 --out /tmp/ab
    """
    if (series_path is None) == (head is None):
        _fail("give exactly one of --series FILE|DIR and --head REV")
    request = series_mod.SeriesRequest(
        **_run_fields(tree, extra, scenarios, accel, out_dir, run_timeout, repeat, seed),
        base=base,
        series=series_path,
        series_version=series_version,
        head=head,
        affected=affected,
        kcidb=kcidb_file,
        kcidb_origin=kcidb_origin,
    )
    with _stage():
        outcome = series_mod.run_series(request)
    sys.exit(outcome.exit_code)


@main.command(name="bisect")
@click.argument("scenario")
@click.option("--good", required=True, help="a commit without the bug")
@click.option("--bad", required=True, help="a commit with the bug")
@REPO_OPTION
@click.option("--kconfig", "extra", multiple=True, help=KCONFIG_HELP)
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    help="runs per commit (default: from the bad commit's reproduction rate, "
    "for a 1% chance of calling a commit with the bug good)",
)
@click.option("--title", help="bisect only this splat (default: every bug of the bad commit)")
@click.option("--fix", is_flag=True, help="find the commit that fixed it (--bad is older)")
@click.option("--out", "out_dir", default="results", show_default=True, help="results directory")
@ACCEL_OPTION
@SEED_OPTION
@TIMEOUT_OPTION
def bisect_cmd(
    scenario: str,
    good: str,
    bad: str,
    tree: str | None,
    extra: tuple[str, ...],
    runs: int | None,
    title: str | None,
    fix: bool,
    out_dir: str,
    accel: str,
    seed: int | None,
    run_timeout: float,
) -> None:
    """The commit that introduced (--fix: fixed) each bug SCENARIO finds.

    Checks the endpoints first (the bad commit's bugs and the reproduction
    rate of each, the good commit's clean runs), then bisects every bug the
    bad commit has and the good one has not (--title: one), most severe
    first, sizing the runs per commit from its rate; drives git bisect in the
    harness worktree (incremental builds; a commit is built and booted once
    for all bugs). Only the bug being bisected is a reproduction: another
    crash is good if the scenario ran to its end, skip if it cut the run
    short; a build, boot or fixture failure is skip. --out gets junit.xml,
    summary.json, bisect.md, bisect.log and steps/ (every built commit's run).

    \b
    Exit status:
      0  found the commit of every bug bisected
      1  inconclusive for a bug or for all (the reason is the last line)
      2  bad input (option, scenario, revision)
      3  the tree or an endpoint could not be built

    \b
    Examples:
      harness bisect gpio-sim-remove-under-readers --tree ~/linux --good v6.11 --bad v6.12
      harness bisect mtd-spi-nor-unbind-during-read --good HEAD~8 --bad HEAD --runs 5
      harness bisect nvmem-unbind-at24-during-read --tree ~/linux --bad v6.12 --good fix --fix
    """
    request = bisect_mod.BisectRequest(
        **_run_fields(tree, extra, (scenario,), accel, out_dir, run_timeout, None, seed),
        good=good,
        bad=bad,
        runs=runs,
        title=title,
        fix=fix,
    )
    with _stage():
        outcome = bisect_mod.run_bisect(request)
    sys.exit(outcome.exit_code)


if __name__ == "__main__":
    main()

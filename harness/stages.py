"""The composed stages every command runs through: config -> build -> boot/exec.

Each command fills a request record (config within build within exec, as
kunit_tool does) and calls these; a stage that cannot go on raises
``PipelineError`` with the exit status the command should end with. What a
command does with the results (write them, compare two sides, bisect) is the
command's own module in harness/commands/.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness import accel as accel_mod
from harness import artifact, kapi, kconfig, locks, report, shard, symbols, vcs
from harness.build import BuildError, BuildRecord, ConfigResult, build, configure
from harness.progress import say
from harness.results import ItemResult
from harness.runner import Runner
from harness.scenario import Scenario, load_scenarios, resolve
from harness.status import Exit, PipelineError
from harness.tree import KernelTree, TreeError, default_tree, default_tree_path, open_tree
from harness.yamlnodes import SchemaErrors


@dataclass(frozen=True)
class ConfigRequest:
    tree: str | None = None  # None: Debian's linux-source tarball
    kconfig: tuple[str, ...] = ()  # user fragments, applied last
    scenarios: tuple[str, ...] = ()  # names or files; () = all built-in
    # series and bisection hold a harness-owned tree exclusively and put it at the commit
    # to build; any other run on such a tree holds it shared, so a series cannot move it
    placed: bool = False


@dataclass(frozen=True)
class BuildRequest(ConfigRequest):
    use_ccache: bool = True


@dataclass(frozen=True)
class ExecRequest(BuildRequest):
    kernel: str | None = None  # an artifact of `harness build --artifact`: boot it, build nothing
    accel: str = "auto"
    out_dir: str = "results"
    run_timeout: float = 3600.0
    shell: str = ""  # "after"/"before": hand the developer the guest's console (run --shell)
    # after each boot, given the finished results: a reason to run no more (bisection)
    enough: Callable[[list[ItemResult]], str | None] | None = None


def load(request: ConfigRequest) -> list[Scenario]:
    """The request's scenarios, checked with its other input files before any work."""
    for path in request.kconfig:
        if not Path(path).is_file():
            raise PipelineError(f"--kconfig {path}: no such file")
    try:
        return load_scenarios(resolve(list(request.scenarios)))
    except SchemaErrors as exc:
        raise PipelineError(f"scenario check failed:\n{exc}") from exc


@contextmanager
def tree_in_use(request: ConfigRequest) -> Iterator[None]:
    """A tree the harness imported (the default one, `harness fetch`'s) is held (shared)
    while a command reads it: a series or a bisection moves it between commits only when
    no run is building or booting it."""
    if request.tree is None:
        checkout = default_tree_path()
    elif not request.placed and vcs.harness_owned(Path(request.tree)):
        checkout = Path(request.tree).resolve()  # `harness fetch`'s: a series may move it
    else:
        yield
        return
    with locks.hold(vcs.use_lock(checkout), f"the tree {checkout}", shared=True):
        yield


def api_tree(tree: str | None) -> Path | None:
    """The tree whose kernel APIs a listing reports: the given one, or the default tree
    if it is already unpacked (a listing never unpacks it)."""
    if tree is not None:
        return Path(tree).resolve()
    default = default_tree_path()
    return default if (default / "Makefile").exists() else None


def open_kernel_tree(request: ConfigRequest) -> KernelTree:
    try:
        return open_tree(Path(request.tree)) if request.tree else default_tree()
    except TreeError as exc:
        raise PipelineError(str(exc)) from exc


def open_repository(request: ConfigRequest) -> Path:
    """The repository a series or a bisection works on: --tree's, or the default tree's.

    Unlike open_kernel_tree, the user's checkout is not checked for an in-place
    build: nothing is built in it, the harness works in its own worktree.
    """
    if request.tree is None:
        try:
            return default_tree(restore=False).path
        except TreeError as exc:
            raise PipelineError(str(exc)) from exc
    path = Path(request.tree).expanduser().resolve()
    if not vcs.is_repository(path):
        raise PipelineError(
            f"--tree {path} is not a git repository: series and bisection need commits "
            "(pass a git checkout, or no --tree for the default tree)"
        )
    return Path(vcs.git(path, "rev-parse", "--show-toplevel"))


def config_kernel(
    request: ConfigRequest, tree: KernelTree, scenarios: list[Scenario]
) -> ConfigResult:
    names = [name for sc in scenarios for name in sc.kconfig]
    try:
        fragments = kconfig.FragmentSet.for_scenarios(names, [Path(p) for p in request.kconfig])
        return configure(tree, fragments)
    except kconfig.FragmentError as exc:
        raise PipelineError(str(exc)) from exc
    except BuildError as exc:
        raise PipelineError(str(exc), Exit.BUILD) from exc


def build_kernel(
    request: BuildRequest, tree: KernelTree, scenarios: list[Scenario]
) -> tuple[ConfigResult, BuildRecord]:
    result = config_kernel(request, tree, scenarios)
    if result.mismatches:
        raise PipelineError(result.report(), Exit.BUILD, summary=result.summary())
    try:
        return result, build(result, use_ccache=request.use_ccache)
    except BuildError as exc:
        raise PipelineError(str(exc), Exit.BUILD, exc.duration_s) from exc


def choose_accel(request: ExecRequest, record: BuildRecord) -> accel_mod.Accel:
    try:
        return accel_mod.choose(request.accel, Path(record.kernel_image))
    except ValueError as exc:
        raise PipelineError(str(exc)) from exc


def exec_runner(
    request: ExecRequest, record: BuildRecord, out: Path, info: report.RunInfo
) -> Runner:
    """The runner that boots the built kernel (KVM may fall back to TCG on the way)."""
    chosen = choose_accel(request, record)
    say(f"accel: {chosen.name} ({chosen.reason})")
    info.properties["accelerator"] = f"{chosen.name}: {chosen.reason}"
    return Runner(
        Path(record.kernel_image),
        chosen,
        out,
        time.monotonic() + request.run_timeout,
        modules=record.modules,
        shell=request.shell,
        objects=symbols.for_build(record.build_dir, record.modules),
    )


def _sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def install_signal_handlers() -> None:
    """SIGTERM, SIGHUP and SIGINT end a run as an interrupt: QEMU stopped, results written."""
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGHUP, _sigterm)
    # a shell starts background jobs with SIGINT ignored; Ctrl-C must still stop QEMU
    signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass
class KernelSource:
    """Where a run's kernel comes from: a tree built here, or an artifact built elsewhere."""

    properties: dict[str, str]
    repro_args: list[str]  # how a reproduce line names this kernel
    missing: Callable[[tuple[str, ...]], str | None]  # why it lacks a scenario's kernel APIs
    kernel: Callable[[BuildRequest, list[Scenario]], BuildRecord]  # build, or the artifact's


def kernel_source(request: ExecRequest) -> KernelSource:
    if request.kernel is None:
        tree = open_kernel_tree(request)
        return KernelSource(
            {
                "tree": str(tree.path),
                "tree_version": tree.version,
                "tree_commit": tree.git_commit or "(not git)",
            },
            ["--tree", str(tree.path)],
            lambda needs: kapi.missing(tree.path, needs),
            lambda request, scenarios: build_kernel(request, tree, scenarios)[1],
        )
    try:
        found = artifact.open_artifact(Path(request.kernel))
    except artifact.ArtifactError as exc:
        raise PipelineError(str(exc)) from exc
    record = found.record
    return KernelSource(
        {
            "tree": record.tree,
            "tree_version": record.tree_version,
            "tree_commit": record.git_commit or "(not git)",
            "kernel_artifact": str(found.path),
            "kernel_artifact_sha256": found.digest,
        },
        ["--kernel", str(found.path)],
        found.missing_api,
        lambda request, scenarios: _artifact_fits(found, scenarios),
    )


def _artifact_fits(found: artifact.Artifact, scenarios: list[Scenario]) -> BuildRecord:
    """The artifact's record, if its config has every option the scenarios' fragments ask."""
    if problems := artifact.config_problems(found, scenarios):
        listed = "\n  ".join(problems)
        raise PipelineError(
            f"--kernel {found.path}: its config lacks what the selected scenarios need:\n"
            f"  {listed}\nrebuild it with those fragments (harness build SCENARIO... "
            "--artifact FILE), or leave those scenarios out"
        )
    return found.record


def measured_times(request: ExecRequest) -> shard.Timing:
    """The durations table's figures for the request's accelerator."""
    try:
        durations = shard.load_durations()
    except ValueError as exc:
        raise PipelineError(str(exc)) from exc
    return shard.timing(durations, shard.table_accel(request.accel))

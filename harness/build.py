"""Configure and build a kernel out of tree, with a record of what was built.

tree + fragments -> (merge_config.sh on allnoconfig, olddefconfig, verify)
-> build directory keyed by (tree location, fragments) -> make.
Keeping one build directory per (tree, fragments) lets make rebuild
incrementally when the tree changes, also when the new tree's Kconfig
resolves the same fragments to another .config (a series or a bisection
step that adds an option), and do nothing when nothing did.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import kapi, kconfig, locks, paths
from harness.kconfig import FragmentSet, Mismatch, Prerequisite, Request
from harness.progress import Ticker, say
from harness.tree import KernelTree


class BuildError(Exception):
    """Configuration or compilation failed; the message says where to look."""

    def __init__(self, message: str, duration_s: float | None = None):
        super().__init__(message)
        self.duration_s = duration_s  # what a failed compilation cost, for a bisection's table


@dataclass(frozen=True)
class ConfigResult:
    tree: KernelTree
    fragments: tuple[Path, ...]
    dotconfig: Path
    config_hash: str
    mismatches: tuple[Mismatch, ...]
    fragments_digest: str = ""
    prerequisites: tuple[Prerequisite, ...] = ()  # what this tree made requests depend on
    undefined: tuple[Request, ...] = ()  # if-defined requests this tree has no symbol for

    def report(self) -> str:
        lines = ["fragments (merged in this order, later wins):"]
        lines += [f"  {p}" for p in self.fragments]
        if self.prerequisites:
            lines.append("enabled because this tree makes a requested option depend on it:")
            lines += [f"  {p.explain()}" for p in self.prerequisites]
        for request in self.undefined:
            lines.append(
                f"not in this tree's Kconfig, so not required here: CONFIG_{request.symbol} "
                f"(if-defined, {request.fragment}:{request.line})"
            )
        if self.mismatches:
            lines.append(
                f"config check FAILED: {len(self.mismatches)} requested option(s) did not stick:"
            )
            lines += ["  " + m.explain().replace("\n", "\n  ") for m in self.mismatches]
        else:
            lines.append(f"config check passed (config {self.config_hash})")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: the first option that did not stick, and how many more."""
        if not self.mismatches:
            return f"config check passed (config {self.config_hash})"
        first = self.mismatches[0].explain().splitlines()[0]
        more = len(self.mismatches) - 1
        return f"config check failed: {first}" + (f" (and {more} more)" if more else "")


@dataclass(frozen=True)
class BuildRecord:
    """Metadata of one build, written next to the results (cf. tuxmake's metadata.json)."""

    tree: str
    tree_version: str
    git_commit: str | None
    git_describe: str | None
    git_dirty: bool
    config_hash: str
    fragments: list[str]
    build_dir: str
    kernel_image: str
    kernel_release: str
    toolchain: str
    ccache: bool
    jobs: int
    objects_compiled: int
    duration_s: float
    log: str
    modules: dict[str, str]  # helper kernel modules built against this kernel
    # helper modules that did not compile against this tree -> why: only the scenarios
    # that load one are lost (skipped with the reason), not the whole run
    module_errors: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def _run(
    cmd: list[str],
    cwd: Path,
    log: Path,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> int:
    """Run a command with its output appended to ``log``; return the exit code."""
    with log.open("a") as sink:
        sink.write(f"$ {' '.join(cmd)}\n")
        sink.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                sink.write(line)
                if on_line:
                    on_line(line)
            return proc.wait()
        except BaseException:
            os.killpg(proc.pid, 9)
            proc.wait()
            raise


def _tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _jobs() -> int:
    return len(os.sched_getaffinity(0))


def configure(tree: KernelTree, fragments: FragmentSet) -> ConfigResult:
    """Resolve fragments into a .config in a scratch directory and verify it."""
    requests = fragments.requests()
    scratch = paths.cache_dir() / "configs" / f"{tree.identity}-{fragments.digest()}"
    with locks.hold(_lock_file(scratch), f"the config directory {scratch.name}"):
        return _configure(tree, fragments, requests, scratch)


def _lock_file(directory: Path) -> Path:
    return directory.parent / f"{directory.name}.lock"


def _configure(
    tree: KernelTree, fragments: FragmentSet, requests: dict, scratch: Path
) -> ConfigResult:
    scratch.mkdir(parents=True, exist_ok=True)
    log = scratch / "config.log"
    log.write_text("")
    say(f"config: merging {len(fragments.files)} fragments on allnoconfig ({tree.path})")
    added: list[Prerequisite] = []
    undefined = kconfig.undefined_if_defined(requests, tree.path)
    names = {r.symbol for r in undefined}
    wanted = dict(requests)
    while True:
        values = _merge(tree, [*fragments.files, *_prerequisite_fragment(scratch, added)], log)
        mismatches = kconfig.check(wanted, values, lambda symbol: symbol not in names)
        found = kconfig.prerequisites(mismatches, tree.path, values, wanted) if mismatches else []
        if not found:
            break
        added += found  # each round adds symbols no earlier round had: the loop ends
        # its line in the fragment _prerequisite_fragment writes: a header, then 2 lines each
        wanted.update(
            (p.symbol, Request(p.symbol, "y", scratch / PREREQUISITES, 3 + 2 * added.index(p)))
            for p in found
        )
    if mismatches:
        mismatches = kconfig.explain(mismatches, tree.path, values)
    dotconfig = scratch / ".config"
    return ConfigResult(
        tree,
        fragments.files,
        dotconfig,
        _file_hash(dotconfig),
        tuple(mismatches),
        fragments.digest(),
        tuple(added),
        tuple(undefined),
    )


PREREQUISITES = "prerequisites.config"


def _prerequisite_fragment(scratch: Path, added: list[Prerequisite]) -> list[Path]:
    """The symbols this tree's Kconfig makes the requests depend on, as one more fragment."""
    if not added:
        return []
    path = scratch / PREREQUISITES
    path.write_text(
        "# written by the harness: what this tree makes requested options depend on\n"
        + "".join(f"# {p.explain()}\n{p.line()}\n" for p in added)
    )
    return [path]


def _merge(tree: KernelTree, files: list[Path], log: Path) -> dict[str, str]:
    """merge_config.sh on allnoconfig, then olddefconfig; the resulting values."""
    scratch = log.parent
    merge = tree.path / "scripts" / "kconfig" / "merge_config.sh"
    rc = _run(["bash", str(merge), "-n", "-O", str(scratch), *map(str, files)], tree.path, log)
    if rc == 0:
        rc = _run(["make", "-s", f"O={scratch}", "olddefconfig"], cwd=tree.path, log=log)
    if rc != 0:
        raise BuildError(f"configuration failed (exit {rc}); log: {log}\n{_tail(log)}")
    return kconfig.parse_dotconfig((scratch / ".config").read_text())


def build_dir_for(config: ConfigResult) -> Path:
    return paths.cache_dir() / "builds" / f"{config.tree.identity}-{config.fragments_digest}"


_COMPILED = re.compile(r"^\s+(CC|AS|LD|AR|HOSTCC|OBJCOPY|BUILD|LDS)\s+(?:\[M\]\s+)?(\S+)")


def _toolchain() -> str:
    try:
        out = subprocess.run(["gcc", "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def build(config: ConfigResult, use_ccache: bool = True) -> BuildRecord:
    """Compile the configured kernel (incrementally if its build directory exists)."""
    if config.mismatches:
        raise BuildError(config.report())
    out = build_dir_for(config)
    with locks.hold(_lock_file(out), f"the build directory {out}"):
        return _build(config, out, use_ccache)


def _build(config: ConfigResult, out: Path, use_ccache: bool) -> BuildRecord:
    out.mkdir(parents=True, exist_ok=True)
    target_config = out / ".config"
    if not target_config.exists() or target_config.read_bytes() != config.dotconfig.read_bytes():
        shutil.copyfile(config.dotconfig, target_config)
    log = out / "build.log"
    log.write_text("")
    env = dict(os.environ)
    make = ["make", f"O={out}", f"-j{_jobs()}"]
    ccache = use_ccache and shutil.which("ccache") is not None
    if ccache:
        make.append("CC=ccache gcc")
        env.setdefault("CCACHE_BASEDIR", str(paths.cache_dir()))
    say(f"build: {out} (-j{_jobs()}{', ccache' if ccache else ''}); log: {log}")
    counted = {"objects": 0, "last": ""}
    ticker = Ticker()
    started = time.monotonic()

    def on_line(line: str) -> None:
        m = _COMPILED.match(line)
        if not m:
            return
        if m.group(1) == "CC":
            counted["objects"] += 1
        counted["last"] = m.group(2)
        ticker.update(
            f"build: {counted['objects']} objects compiled, now {m.group(1)} {m.group(2)}"
        )

    rc = _run([*make, "olddefconfig"], cwd=config.tree.path, log=log, env=env)
    if rc == 0:
        rc = _run(make, cwd=config.tree.path, log=log, env=env, on_line=on_line)
    duration = time.monotonic() - started
    if rc != 0:
        ticker.done(f"build: FAILED after {duration:.0f} s")
        raise BuildError(
            f"kernel build failed (exit {rc}); full log: {log}\n{_tail(log)}", round(duration, 1)
        )
    modules, module_errors = build_helper_modules(config.tree.path, out, log, env)
    image = out / "arch" / "x86" / "boot" / "bzImage"
    release = subprocess.run(
        ["make", "-s", f"O={out}", "kernelrelease"],
        cwd=config.tree.path,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ticker.done(
        f"build: done in {duration:.0f} s, {counted['objects']} objects compiled"
        + (" (nothing to rebuild)" if counted["objects"] == 0 else "")
    )
    tree = config.tree
    return BuildRecord(
        tree=str(tree.path),
        tree_version=tree.version,
        git_commit=tree.git_commit,
        git_describe=tree.git_describe,
        git_dirty=tree.git_dirty,
        config_hash=config.config_hash,
        fragments=[str(p) for p in config.fragments],
        build_dir=str(out),
        kernel_image=str(image),
        kernel_release=release,
        toolchain=_toolchain(),
        ccache=ccache,
        jobs=_jobs(),
        objects_compiled=counted["objects"],
        duration_s=round(duration, 1),
        log=str(log),
        modules=modules,
        module_errors=module_errors,
    )


def _kbuild_header(source: Path, key: str) -> list[str]:
    """Words of a helper module's Kbuild line '# key: A B' ('requires': CONFIG_ symbols it
    needs; 'needs-api': kernel APIs of harness/kapi.py it is written against)."""
    for line in (source / "Kbuild").read_text().splitlines():
        if line.startswith(f"# {key}:"):
            return line.removeprefix(f"# {key}:").split()
    return []


def build_helper_modules(
    tree: Path, out: Path, log: Path, env: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Build guest/modules/* out of tree against this kernel.

    Returns name -> .ko path, and name -> why for the modules that failed to
    compile (a tree whose API moved): those cost the scenarios that load them.
    Sources are copied next to the kernel build (kbuild writes objects beside
    them), so the project checkout stays clean and each kernel gets its own.
    """
    built, failed = {}, {}
    values = kconfig.parse_dotconfig((out / ".config").read_text())
    for source in sorted(p for p in paths.HELPER_MODULES_DIR.iterdir() if p.is_dir()):
        missing = [
            s
            for s in _kbuild_header(source, "requires")
            if values.get(s.removeprefix("CONFIG_")) != "y"
        ]
        apis = [kapi.probe(tree, name) for name in _kbuild_header(source, "needs-api")]
        if missing or not all(a.present for a in apis):
            continue  # this kernel has no use for it (no SPI for spi_nor_attach, no revocable)
        target = out / "harness-modules" / source.name
        shutil.copytree(source, target, dirs_exist_ok=True)
        cflags = " ".join(a.cflags for a in apis if a.cflags)
        make = ["make", f"O={out}", f"M={target}", f"HARNESS_CFLAGS={cflags}", "modules"]
        module_log = out / "harness-modules" / f"{source.name}.log"
        module_log.write_text("")
        rc = _run(make, cwd=tree, log=module_log, env=env)
        with log.open("a") as sink:
            sink.write(module_log.read_text(errors="replace"))
        ko = target / f"{source.name}.ko"
        if rc != 0 or not ko.exists():
            failed[source.name] = f"{_first_error(module_log)} (log: {module_log})"
            say(f"build: helper module {source.name} failed to build: {failed[source.name]}")
            continue
        built[source.name] = str(ko)
    return built, failed


def _first_error(log: Path) -> str:
    """The compiler's first 'error:' line, else the log's last line."""
    lines = log.read_text(errors="replace").splitlines()
    found = next((line for line in lines if " error: " in line or line.startswith("error:")), "")
    return (found or (lines[-1] if lines else "no output")).strip()

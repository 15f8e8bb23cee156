"""A built kernel as one file: build once, boot it in many CI jobs without a tree.

The artifact is a gzip'd tarball holding the kernel image, the helper modules
built against it, the resolved ``.config``, the build log and ``artifact.json``
(the build record, and what the tree had of each kernel API scenarios need, since a
job that boots the artifact has no tree to read headers from). ``open_artifact``
unpacks it once into the cache, keyed by its content, and returns the record with
paths that point there; ``config_problems`` says which selected scenarios it
cannot serve (an option of their fragments that the artifact's config lacks).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

from harness import kapi, kconfig, locks, paths, symbols
from harness.build import BuildRecord
from harness.scenario import Scenario

FORMAT = 1
TOP = "lifetime-harness-kernel"
META = "artifact.json"
IMAGE = "bzImage"
CONFIG = "config"
LOG = "build.log"
MODULES = "modules"
VMLINUX = "vmlinux"  # only from a build with line tables: reports decoded where it boots


class ArtifactError(Exception):
    """The file is not a kernel artifact this harness can boot; the message says how to make one."""


@dataclass(frozen=True)
class Artifact:
    path: Path  # the file as given
    digest: str  # sha256 of the file: which artifact a result came from
    record: BuildRecord  # paths rewritten to the unpacked copy
    apis: dict[str, kapi.Probe]
    dotconfig: dict[str, str]

    def missing_api(self, names: tuple[str, ...]) -> str | None:
        """Why a scenario needing ``names`` cannot run on this kernel (None: it can)."""
        for name in names:
            probe = self.apis.get(name)
            if probe is None:
                return (
                    f"the artifact does not say whether its tree has kernel API {name}: "
                    "rebuild it with this harness (harness build --artifact)"
                )
            if not probe.present:
                return probe.why
        return None


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(f"{TOP}/{name}")
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def pack(record: BuildRecord, tree: Path, out: Path) -> Path:
    """Write the artifact of ``record`` (built from ``tree``) to ``out``, atomically."""
    apis = {name: kapi.probe(tree, name).to_json() for name in kapi.KERNEL_APIS}
    meta = {"format": FORMAT, "build": record.to_json(), "apis": apis}
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
            _add_bytes(tar, META, json.dumps(meta, indent=1).encode())
            tar.add(record.kernel_image, f"{TOP}/{IMAGE}")
            tar.add(Path(record.build_dir) / ".config", f"{TOP}/{CONFIG}")
            tar.add(record.log, f"{TOP}/{LOG}")
            for name, ko in sorted(record.modules.items()):
                tar.add(ko, f"{TOP}/{MODULES}/{name}.ko")
            if (objects := symbols.for_build(record.build_dir, {})) is not None:
                tar.add(objects.vmlinux, f"{TOP}/{VMLINUX}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _not_artifact(path: Path, why: str) -> ArtifactError:
    return ArtifactError(
        f"--kernel {path}: not a kernel artifact of this harness ({why}); "
        f"make one with: harness build --artifact {path}"
    )


def _unpack(path: Path, target: Path) -> None:
    scratch = target.with_name(target.name + ".partial")
    try:
        with tarfile.open(path, "r:gz") as tar:
            names = set(tar.getnames())
            for needed in (META, IMAGE, CONFIG):
                if f"{TOP}/{needed}" not in names:
                    raise _not_artifact(path, f"it has no {needed}")
            tar.extractall(scratch, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise _not_artifact(path, f"unreadable as a gzip'd tarball: {exc}") from exc
    os.replace(scratch / TOP, target)


def open_artifact(path: Path) -> Artifact:
    """Unpack ``path`` into the cache (once per content) and read its record."""
    path = path.expanduser()
    if not path.is_file():
        raise ArtifactError(
            f"--kernel {path}: no such file (make one with: harness build --artifact {path})"
        )
    digest = _digest(path)
    target = paths.cache_dir() / "artifacts" / digest[:16]
    target.parent.mkdir(parents=True, exist_ok=True)
    with locks.hold(target.parent / f"{target.name}.lock", f"the unpacked artifact {target}"):
        if not (target / META).exists():
            _unpack(path, target)
    try:
        meta = json.loads((target / META).read_text())
        built = meta["build"]
        if meta.get("format") != FORMAT:
            raise _not_artifact(path, f"format {meta.get('format')}, this harness reads {FORMAT}")
        modules = {name: str(target / MODULES / f"{name}.ko") for name in built["modules"]}
        record = replace(
            BuildRecord(**built),
            kernel_image=str(target / IMAGE),
            log=str(target / LOG),
            modules=modules,
        )
        if (target / VMLINUX).is_file():  # where symbols.for_build finds it
            record = replace(record, build_dir=str(target))
        apis = {name: kapi.Probe(**probe) for name, probe in meta["apis"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _not_artifact(path, f"its {META} is unreadable: {exc}") from exc
    values = kconfig.parse_dotconfig((target / CONFIG).read_text())
    return Artifact(path.resolve(), digest, record, apis, values)


def config_problems(artifact: Artifact, scenarios: list[Scenario]) -> list[str]:
    """Per scenario, the options of its fragments (base ones included) the artifact lacks."""
    problems = []
    for sc in scenarios:
        names = [*paths.BASE_FRAGMENTS, *sc.kconfig]
        fragments = kconfig.FragmentSet(tuple(paths.fragment_path(n) for n in dict.fromkeys(names)))
        for mismatch in kconfig.check(fragments.requests(), artifact.dotconfig):
            req = mismatch.request
            got = "it unset" if mismatch.got == "n" else f"{mismatch.got}"
            problems.append(
                f"{sc.name}: CONFIG_{req.symbol}={req.value} ({req.fragment.name}:{req.line}), "
                f"the artifact has {got}"
            )
    return problems

"""The kernel artifact: written and read back, refused with a way out when it is not one,
and checked against what the selected scenarios' fragments need (a real 6.12 .config)."""

import json
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from harness import artifact, kapi
from harness.build import BuildRecord
from harness.commands import run as run_command
from harness.scenario import load_scenarios, resolve
from harness.status import Exit, PipelineError

DATA = Path(__file__).parent / "data"
CONFIG = DATA / "config-6.12-harness"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


def _built(tmp_path: Path) -> BuildRecord:
    """A build directory as build() leaves it: image, .config, log, one helper module."""
    out = tmp_path / "build"
    (out / "arch/x86/boot").mkdir(parents=True)
    (out / "arch/x86/boot/bzImage").write_bytes(b"\x4d\x5a kernel image bytes")
    (out / ".config").write_text(CONFIG.read_text())
    (out / "build.log").write_text("  CC      init/main.o\n")
    (out / "harness-modules/gpio_consumer").mkdir(parents=True)
    ko = out / "harness-modules/gpio_consumer/gpio_consumer.ko"
    ko.write_bytes(b"\x7fELF module")
    return BuildRecord(
        tree="/src/linux",
        tree_version="6.12.118",
        git_commit="0123456789abcdef0123456789abcdef01234567",
        git_describe="v6.12.118",
        git_dirty=False,
        config_hash="abcdef0123456789",
        fragments=["/h/kconfigs/base.config"],
        build_dir=str(out),
        kernel_image=str(out / "arch/x86/boot/bzImage"),
        kernel_release="6.12.118",
        toolchain="gcc (Debian 12.2.0-14+deb12u1) 12.2.0",
        ccache=True,
        jobs=2,
        objects_compiled=1296,
        duration_s=415.0,
        log=str(out / "build.log"),
        modules={"gpio_consumer": str(ko)},
    )


def _tree_with_revocable(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "include/linux").mkdir(parents=True)
    (tree / "include/linux/revocable.h").write_text(
        "struct revocable_provider *revocable_provider_alloc(void *res);\n"
        "struct revocable *revocable_alloc(struct revocable_provider *rp);\n"
    )
    return tree


def test_round_trip_keeps_the_record_and_points_at_the_unpacked_files(tmp_path):
    record = _built(tmp_path)
    path = artifact.pack(record, _tree_with_revocable(tmp_path), tmp_path / "k.tar.gz")
    found = artifact.open_artifact(path)
    assert Path(found.record.kernel_image).read_bytes() == b"\x4d\x5a kernel image bytes"
    ko = Path(found.record.modules["gpio_consumer"])
    assert ko.read_bytes() == b"\x7fELF module"
    assert found.record.log != record.log and Path(found.record.log).exists()
    same = {"kernel_image", "log", "modules"}
    for key, value in record.to_json().items():
        if key not in same:
            assert found.record.to_json()[key] == value, key
    assert found.dotconfig["GPIO_SIM"] == "y"
    assert found.missing_api(("revocable",)) is None
    assert len(found.digest) == 64
    assert artifact.open_artifact(path).record == found.record  # unpacked once, read again


def test_the_tree_apis_travel_with_the_artifact(tmp_path):
    tree = tmp_path / "plain"
    tree.mkdir()
    found = artifact.open_artifact(artifact.pack(_built(tmp_path), tree, tmp_path / "k.tar.gz"))
    why = found.missing_api(("revocable",))
    assert why == kapi.probe(tree, "revocable").why and "revocable.h" in why


def test_no_file_and_not_an_artifact_say_how_to_make_one(tmp_path):
    with pytest.raises(artifact.ArtifactError, match="no such file.*harness build --artifact"):
        artifact.open_artifact(tmp_path / "missing.tar.gz")
    junk = tmp_path / "junk.tar.gz"
    junk.write_text("not a tarball")
    with pytest.raises(artifact.ArtifactError, match="not a kernel artifact.*gzip"):
        artifact.open_artifact(junk)
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        tar.add(CONFIG, "lifetime-harness-kernel/config")
    with pytest.raises(artifact.ArtifactError, match="it has no artifact.json"):
        artifact.open_artifact(other)


def test_a_future_format_is_refused(tmp_path):
    path = artifact.pack(_built(tmp_path), tmp_path, tmp_path / "k.tar.gz")
    assert not (tmp_path / "cache/artifacts").exists()  # unpacked only when a run opens it
    found = artifact.open_artifact(path)
    meta_file = Path(found.record.kernel_image).parent / "artifact.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(artifact.ArtifactError, match="format 99"):
        artifact.open_artifact(path)


def test_the_shipped_scenarios_fit_a_kernel_of_all_fragments(tmp_path):
    found = artifact.open_artifact(artifact.pack(_built(tmp_path), tmp_path, tmp_path / "k.gz"))
    assert artifact.config_problems(found, load_scenarios(resolve([]))) == []


def test_an_option_a_scenario_needs_is_named_with_its_fragment_line(tmp_path):
    found = artifact.open_artifact(artifact.pack(_built(tmp_path), tmp_path, tmp_path / "k.gz"))
    values = {k: v for k, v in found.dotconfig.items() if k != "GPIO_SIM"}
    lacking = replace(found, dotconfig=values)
    scenarios = load_scenarios(resolve(["gpio-sim-plug-cycle", "nvmem-dln2-unplug-during-read"]))
    problems = artifact.config_problems(lacking, scenarios)
    assert len(problems) == 1, problems
    assert problems[0].startswith("gpio-sim-plug-cycle: CONFIG_GPIO_SIM=y (gpio-sim.config:")
    assert problems[0].endswith("the artifact has it unset")


def test_run_refuses_an_artifact_lacking_an_option_before_any_boot(tmp_path):
    record = _built(tmp_path)
    dotconfig = Path(record.build_dir) / ".config"
    dotconfig.write_text(dotconfig.read_text().replace("CONFIG_GPIO_SIM=y\n", ""))
    path = artifact.pack(record, tmp_path, tmp_path / "k.tar.gz")
    out = tmp_path / "results"
    request = run_command.RunRequest(
        scenarios=("gpio-sim-plug-cycle",), kernel=str(path), out_dir=str(out)
    )
    outcome = run_command.run_scenarios(request)
    assert outcome.exit_code == Exit.BAD_INPUT
    summary = json.loads((out / "summary.json").read_text())
    assert "CONFIG_GPIO_SIM=y (gpio-sim.config:" in summary["harness_error"]
    assert summary["boots"] == [] and summary["items"][0]["status"] == "error"
    assert (
        summary["properties"]["kernel_artifact_sha256"]
        == outcome.info.properties["kernel_artifact_sha256"]
    )


def test_kernel_with_tree_or_kconfig_is_bad_input(tmp_path):
    for extra in ({"tree": str(tmp_path)}, {"kconfig": (str(CONFIG),)}):
        request = run_command.RunRequest(kernel=str(tmp_path / "k.tar.gz"), **extra)
        with pytest.raises(PipelineError, match="--tree and --kconfig belong"):
            run_command.run_scenarios(request)

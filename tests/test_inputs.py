"""Bad input files give file:line errors and exit 2 from the CLI, never a traceback."""

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_scenario import expectations

from harness import kconfig, textfile
from harness.cli import main
from harness.scenario import load_scenario
from harness.yamlnodes import SchemaErrors

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "tests" / "data" / "logs"


def harness(
    *args: str, env: dict | None = None, timeout: float = 120, preexec_fn=None
) -> subprocess.CompletedProcess:
    """The CLI as a user runs it; ``env`` adds to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec_fn,
    )


@pytest.fixture
def latin1_scenario(tmp_path: Path) -> Path:
    text = (ROOT / "scenarios" / "gpio-sim-plug-cycle.yaml").read_text()
    lines = text.splitlines(keepends=True)
    lines[2] = "# caf\xe9 au lait\n"  # third line, as an editor on a latin-1 locale saves it
    path = tmp_path / "gpio-sim-plug-cycle.yaml"
    path.write_bytes("".join(lines).encode("latin-1"))
    return path


def test_non_utf8_scenario_is_a_schema_error_at_its_line(latin1_scenario):
    with pytest.raises(SchemaErrors) as caught:
        load_scenario(latin1_scenario)
    (error,) = caught.value.errors
    assert error.line == 3
    assert "not UTF-8" in error.message and "iconv" in error.message


@pytest.mark.parametrize("command", ["check", "run"])
def test_non_utf8_scenario_from_the_cli(latin1_scenario, command):
    proc = harness(command, str(latin1_scenario))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{latin1_scenario}:3: not UTF-8" in proc.stderr


def test_non_utf8_fragment_names_file_and_line(tmp_path):
    fragment = tmp_path / "series.config"
    fragment.write_bytes(b"CONFIG_GPIO_SIM=y\n# \xff\xfe\nCONFIG_LKDTM=y\n")
    with pytest.raises(kconfig.FragmentError) as caught:
        kconfig.FragmentSet((fragment,)).requests()
    assert str(caught.value).startswith(f"{fragment}:2: not UTF-8")


def test_non_utf8_fragment_from_the_cli(tmp_path):
    tree = tmp_path / "linux"  # what open_tree checks; the fragment is read before any make
    tree.mkdir()
    (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 12\n")
    (tree / "Kconfig").write_text("")
    fragment = tmp_path / "series.config"
    fragment.write_bytes(b"CONFIG_GPIO_SIM=y\n# \xff\xfe\n")
    proc = harness("config", "--kconfig", str(fragment), "--tree", str(tree))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{fragment}:2: not UTF-8" in proc.stderr


def test_log_command_refuses_a_binary_file(tmp_path):
    blob = tmp_path / "vmlinux.gz"
    blob.write_bytes(bytes(range(256)) * 64)
    proc = harness("log", str(blob))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{blob}:1: not a text console log" in proc.stderr


def test_log_command_tolerates_stray_serial_bytes(tmp_path):
    log = tmp_path / "console.log"
    log.write_bytes((LOGS / "lkdtm-warning.log").read_bytes() + b"\xff\x00 line noise\n")
    proc = harness("log", str(log))
    assert proc.returncode == 1, proc.stderr  # the WARNING in it is found
    assert "WARNING in lkdtm_WARNING" in proc.stdout


def test_read_text_reports_the_first_bad_byte(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_bytes(b"a: 1\nb: 2\nc: \x80\n")
    with pytest.raises(textfile.TextFileError) as caught:
        textfile.read_text(path, "scenario file")
    assert caught.value.line == 3 and "offset 13" in caught.value.message


BAD = ROOT / "tests" / "scenarios" / "bad"


def bounded_harness(*args: str) -> subprocess.CompletedProcess:
    """The CLI with 1 GiB of address space and 30 s: a command that reads a device or a
    FIFO to its end fails the test instead of filling the machine's memory or hanging."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return harness(*args, timeout=30, preexec_fn=limit)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "scenario.yaml"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("command", ["check", "log"])
@pytest.mark.parametrize("target", ["fifo", "/dev/zero"])
def test_check_and_log_refuse_what_is_not_a_regular_file(command, target, fifo):
    path = str(fifo) if target == "fifo" else target
    proc = bounded_harness(command, path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    kind = "FIFO (named pipe)" if target == "fifo" else "character device"
    assert f"{path}:1: is a {kind}, not a regular file" in proc.stderr


def test_a_file_over_the_bound_is_refused_saying_the_bound(tmp_path):
    big = tmp_path / "big.yaml"
    with big.open("wb") as sink:  # sparse: no disk, but read() returns its zeros
        sink.truncate(textfile.TEXT_MAX + 1)
    proc = bounded_harness("check", str(big))
    assert proc.returncode == 2, proc.stderr
    assert f"{big}:1: larger than 64 MiB, the most the harness reads of a scenario file" in (
        proc.stderr
    )
    with pytest.raises(textfile.TextFileError, match="larger than 1000 bytes"):
        textfile.read_bytes(big, "console log", 1000)


def test_check_names_every_bad_input_fixture_with_line_and_fix(tmp_path):
    """One `harness check` of every file in tests/scenarios/bad, with a tree in which
    drivers/gpio is a directory: each expected `file:line: ...` error, exit 2."""
    (tmp_path / "drivers" / "gpio").mkdir(parents=True)
    files = sorted(BAD.glob("*.yaml"))
    proc = harness("check", "--tree", str(tmp_path), *map(str, files))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    for path in files:
        for line, text in expectations(path):
            where = f"{path}:{line}: "
            assert any(e.startswith(where) and text in e for e in lines), (where, text)
    assert f"drivers/gpio' is a directory of {tmp_path}: write drivers/gpio/" in proc.stderr


@pytest.mark.parametrize("value", ["0", "-1", "1001"])
def test_repeat_out_of_range_is_an_option_error(tmp_path, value):
    # an accepted --repeat ends at the missing artifact, before any build or boot
    args = ["--kernel", str(tmp_path / "none.tar.gz"), "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(main, ["run", "--repeat", value, *args, "gpio-sim-plug-cycle"])
    assert result.exit_code == 2 and "Invalid value for '--repeat'" in result.output
    assert "1<=x<=1000" in result.output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["gpio-sim-plug-cycle", "nvmem-data-integrity"], "--shell runs one scenario; name one"),
        (
            ["gpio-sim-plug-cycle", "--repeat", "3"],
            "--shell runs one item: drop --shard and --repeat",
        ),
        (["gpio-sim-plug-cycle"], "--shell needs a terminal on stdin"),
    ],
)
def test_a_shell_is_for_one_item_at_a_terminal(tmp_path, args, said):
    """Refused before any build or boot (the subprocess's stdin is not a terminal)."""
    proc = harness("run", *args, "--out", str(tmp_path / "r"), "--shell")
    assert proc.returncode == 2 and said in proc.stdout + proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r").exists()

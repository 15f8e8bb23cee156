"""Frames to source lines with the real binutils, on objects compiled here with debug info:
an executable stands for vmlinux (absolute addresses), a relocatable object for a module's
.ko (section-relative). tests/data/symbols/calls.c: main -> caller -> leaf, which inlines
inner(); the boot tier checks the same on a kernel's own report."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import symbols

SOURCE = Path(__file__).parent / "data" / "symbols" / "calls.c"


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> symbols.Objects:
    if shutil.which("gcc") is None:
        pytest.skip("no gcc")
    out = tmp_path_factory.mktemp("symbols")
    flags = ["gcc", "-g", "-O2", "-fno-pie"]
    subprocess.run([*flags, "-no-pie", "-o", out / "vmlinux", SOURCE], check=True)
    subprocess.run([*flags, "-c", "-o", out / "calls.ko", SOURCE], check=True)
    return symbols.Objects(out / "vmlinux", {"calls": out / "calls.ko"})


def _line(text: str) -> int:
    return next(n for n, line in enumerate(SOURCE.read_text().splitlines(), 1) if text in line)


def test_a_return_address_is_the_line_of_the_call(objects):
    (decoded,) = symbols.decode([" caller+0x5/0x9"], objects)
    assert decoded == f" caller+0x5/0x9 ({SOURCE}:{_line('int y = leaf(p);')})"
    # kallsyms counts a function's size to the next symbol, alignment padding included
    (padded,) = symbols.decode([" caller+0x5/0x10"], objects)
    assert padded == decoded.replace("/0x9", "/0x10")


def test_a_module_frame_is_looked_up_in_its_ko_relative_to_its_section(objects):
    (decoded,) = symbols.decode([" main+0x12/0x1b [calls]"], objects)  # main is in .text.startup
    assert decoded.endswith(f"({SOURCE}:{_line('return caller(&v);')})")


def test_the_faulting_rip_is_its_own_line_and_inlined_functions_come_first(objects):
    inlined, rip = symbols.decode(["RIP: 0010:leaf+0x0/0x7"], objects)
    assert inlined == f"inner ({SOURCE}:{_line('return *p + 1;')}) (inlined)"
    assert rip == f"RIP: 0010:leaf+0x0/0x7 ({SOURCE}:{_line('int x = inner(p);')})"


def test_what_does_not_resolve_stays_as_it_was(objects):
    # an unknown name, a module not given, an offset past the function (another build)
    lines = [" nosuch+0x1/0x2", " caller+0x5/0x9 [unloaded]", " leaf+0x50/0x60", "Call Trace:"]
    assert symbols.decode(lines, objects)[1:] == lines[1:]
    assert symbols.decode(lines[:1], objects) == lines[:1]


def test_log_refuses_a_vmlinux_without_line_tables(tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("no gcc")
    bare = tmp_path / "vmlinux"
    subprocess.run(["gcc", "-O2", "-o", bare, SOURCE], check=True)
    log = Path(__file__).parent / "data" / "logs" / "lkdtm-warning.log"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "log", str(log), "--vmlinux", str(bare)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 2 and "has no line tables (.debug_line)" in proc.stderr
    assert "Traceback" not in proc.stderr

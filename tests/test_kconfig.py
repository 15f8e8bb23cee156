"""Config check: fragments parse, dropped options are found and explained."""

from pathlib import Path

import pytest

from harness import kconfig, paths

DATA = Path(__file__).parent / "data"


def write_tree(root: Path) -> Path:
    """A miniature Kconfig tree with the constructs the scanner must follow."""
    (root / "arch" / "x86").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "Kconfig").write_text(
        'mainmenu "Test"\n'
        "if-success = $(shell,true)\n"
        'source "arch/$(SRCARCH)/Kconfig"\n'
        'source "lib/Kconfig"\n'
    )
    (root / "arch" / "x86" / "Kconfig").write_text("config X86\n\tdef_bool y\n")
    (root / "lib" / "Kconfig").write_text(
        "menuconfig RUNTIME_TESTING_MENU\n"
        '\tbool "Runtime testing"\n'
        "\thelp\n"
        "\t  config FAKE inside help text must be ignored\n"
        "\n"
        "if RUNTIME_TESTING_MENU\n"
        'menu "Inner"\n'
        "\tdepends on X86\n"
        "config LKDTM\n"
        '\ttristate "LKDTM"\n'
        "\tdepends on DEBUG_FS && \\\n"
        "\t\t!ARCH_NO\n"
        "endmenu\n"
        "endif\n"
        "config FAKE_AFTER\n"
        "\tbool\n"
    )
    return root


def test_parse_fragment_and_errors(tmp_path):
    frag = tmp_path / "f.config"
    text = '# comment\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="str"\n\nCONFIG_D=20\n'
    reqs = kconfig.parse_fragment(text, frag)
    assert [(r.symbol, r.value, r.line) for r in reqs] == [
        ("A", "y", 2),
        ("B", "n", 3),
        ("C", '"str"', 4),
        ("D", "20", 6),
    ]
    with pytest.raises(kconfig.FragmentError) as exc:
        kconfig.parse_fragment("CONFIG_A=y\nKASAN=y\n", frag)
    assert str(exc.value).startswith(f"{frag}:2: cannot read 'KASAN=y'")


def test_check_finds_dropped_and_downgraded(tmp_path):
    frag = tmp_path / "x.config"
    reqs = {
        r.symbol: r
        for r in kconfig.parse_fragment(
            "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=20\nCONFIG_E=y\n", frag
        )
    }
    dotconfig = kconfig.parse_dotconfig(
        "CONFIG_A=y\nCONFIG_B=m\nCONFIG_D=20\n# CONFIG_E is not set\n"
    )
    bad = {m.request.symbol: m.got for m in kconfig.check(reqs, dotconfig)}
    assert bad == {"B": "m", "E": "n"}


def test_scanner_collects_enclosing_conditions(tmp_path):
    root = write_tree(tmp_path)
    found = kconfig.scan_kconfig(root, {"LKDTM", "FAKE", "FAKE_AFTER"})
    (entry,) = found["LKDTM"]
    assert entry.where == "lib/Kconfig:9"
    assert entry.conditions == ["RUNTIME_TESTING_MENU", "X86", "DEBUG_FS && !ARCH_NO"]
    assert found["FAKE"] == []
    assert found["FAKE_AFTER"][0].conditions == []


def test_explain_annotates_values(tmp_path):
    root = write_tree(tmp_path)
    frag = tmp_path / "lkdtm.config"
    reqs = {r.symbol: r for r in kconfig.parse_fragment("CONFIG_LKDTM=y\n", frag)}
    values = {"X86": "y", "DEBUG_FS": "y"}
    (mismatch,) = kconfig.explain(kconfig.check(reqs, values), root, values)
    text = mismatch.explain()
    assert text.startswith(f"CONFIG_LKDTM: asked y, got unset (from {frag}:1)")
    assert "RUNTIME_TESTING_MENU [=n] && X86 [=y] && DEBUG_FS [=y]" in text
    assert "[lib/Kconfig:9]" in text


def test_shipped_fragments_parse():
    for name in paths.fragment_names():
        assert kconfig.parse_fragment(
            paths.fragment_path(name).read_text(), paths.fragment_path(name)
        )


def test_real_config_satisfies_shipped_fragments():
    """A .config that olddefconfig produced for the harness from 6.12 (tests/data)."""
    dotconfig = kconfig.parse_dotconfig((DATA / "config-6.12-harness").read_text())
    fragments = kconfig.FragmentSet.for_scenarios(["gpio-sim"], [])
    assert kconfig.check(fragments.requests(), dotconfig) == []


def test_one_kernel_serves_every_builtin_scenario():
    """The chosen scenarios do not change the config: every shipped fragment is in."""
    everything = kconfig.FragmentSet.for_scenarios([], [])
    assert kconfig.FragmentSet.for_scenarios(["gpio-sim"], []).digest() == everything.digest()
    assert {p.stem for p in everything.files} >= {"base", "debug", "gpio-sim", "dln2", "cp2112"}

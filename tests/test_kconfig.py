"""Config check: fragments parse, dropped options are found and explained."""

from pathlib import Path

import pytest

from harness import kconfig, paths

DATA = Path(__file__).parent / "data"


def requests(text: str, frag: Path) -> dict[str, kconfig.Request]:
    return {r.symbol: r for r in kconfig.parse_fragment(text, frag)}


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
    reqs = requests(
        "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=20\nCONFIG_E=y\n", frag
    )
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
    reqs = requests("CONFIG_LKDTM=y\n", frag)
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


def test_if_defined_marks_only_the_next_request(tmp_path):
    frag = tmp_path / "hid.config"
    text = "# why\n# harness: if-defined\nCONFIG_HID_SUPPORT=y\nCONFIG_HID=y\n"
    first, second = kconfig.parse_fragment(text, frag)
    assert (first.symbol, first.if_defined) == ("HID_SUPPORT", True)
    assert (second.symbol, second.if_defined) == ("HID", False)


def test_if_defined_request_is_required_only_where_the_tree_defines_it(tmp_path):
    frag = tmp_path / "hid.config"
    reqs = requests(
        "# harness: if-defined\nCONFIG_HID_SUPPORT=y\nCONFIG_HID=y\nCONFIG_TYPO=y\n", frag
    )
    older = kconfig.parse_dotconfig("CONFIG_HID=y\n")  # a tree without the menu symbol
    assert [m.request.symbol for m in kconfig.check(reqs, older)] == ["TYPO"]
    newer = kconfig.parse_dotconfig("# CONFIG_HID_SUPPORT is not set\nCONFIG_HID=y\n")
    assert [m.request.symbol for m in kconfig.check(reqs, newer)] == ["HID_SUPPORT", "TYPO"]
    # with the tree's Kconfig as the judge (what a build does)
    assert kconfig.check(reqs, older, lambda s: s != "HID_SUPPORT")[0].request.symbol == "TYPO"
    root = write_tree(tmp_path / "tree")
    assert kconfig.undefined_if_defined(reqs, root) == [reqs["HID_SUPPORT"]]


def test_prerequisites_a_tree_adds_by_plain_conjunction(tmp_path):
    """6.1's fs/9p/Kconfig: 9P_FS depends on INET && NET_9P (later trees: NET_9P only)."""
    root = write_tree(tmp_path)
    (root / "fs" / "9p").mkdir(parents=True)
    (root / "net").mkdir()
    (root / "Kconfig").write_text(
        (root / "Kconfig").read_text() + 'source "fs/9p/Kconfig"\nsource "net/Kconfig"\n'
    )
    (root / "fs" / "9p" / "Kconfig").write_text(
        'config 9P_FS\n\ttristate "Plan 9"\n\tdepends on INET && NET_9P\n'
        'config 9P_FS_POSIX_ACL\n\tbool "ACL"\n\tdepends on 9P_FS && (NOT_THERE || !ARCH_NO)\n'
    )
    (root / "net" / "Kconfig").write_text(
        'config INET\n\tbool "TCP/IP"\nconfig NET_9P\n\ttristate "9P"\n'
    )
    frag = tmp_path / "base.config"
    reqs = requests("CONFIG_NET_9P=y\nCONFIG_9P_FS=y\nCONFIG_9P_FS_POSIX_ACL=y\n", frag)
    values = {"NET_9P": "y"}
    mismatches = kconfig.check(reqs, values)
    (added,) = kconfig.prerequisites(mismatches, root, values, reqs)
    assert (added.symbol, added.needed_by.symbol, added.where) == (
        "INET",
        "9P_FS",
        "fs/9p/Kconfig:1",
    )
    assert added.explain() == (
        f"CONFIG_INET=y: CONFIG_9P_FS (from {frag}:2) depends on it in this tree [fs/9p/Kconfig:1]"
    )
    # a symbol some fragment asks to be unset is never added behind its back
    reqs["INET"] = kconfig.Request("INET", "n", frag, 9)
    assert kconfig.prerequisites(mismatches, root, values, reqs) == []


def test_a_failed_check_gives_each_no_verdict_line_its_first_option(tmp_path):
    from harness.build import ConfigResult
    from harness.tree import KernelTree

    root = write_tree(tmp_path)
    frag = tmp_path / "lkdtm.config"
    reqs = requests("CONFIG_LKDTM=y\nCONFIG_RUNTIME_TESTING_MENU=y\n", frag)
    values = {"X86": "y", "DEBUG_FS": "y"}
    mismatches = kconfig.explain(kconfig.check(reqs, values), root, values)
    tree = KernelTree(root, "6.1.176", None, None, False, "user")
    result = ConfigResult(tree, (frag,), tmp_path / ".config", "h", tuple(mismatches))
    assert result.summary() == (
        f"config check failed: CONFIG_LKDTM: asked y, got unset (from {frag}:1) (and 1 more)"
    )
    assert result.report().splitlines()[0] == "fragments (merged in this order, later wins):"

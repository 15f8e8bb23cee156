"""Series verdicts from both sides' results, on splats parsed from real kernel logs."""

from dataclasses import replace
from pathlib import Path

import pytest

from harness import compare, report, splats
from harness.commands import series
from harness.commands.series import SeriesOutcome, SideInfo, select
from harness.results import Item, ItemResult
from harness.scenario import load_scenario
from harness.status import Exit
from tests.test_vcs import git

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "tests" / "data" / "logs"
SCENARIO = load_scenario(ROOT / "scenarios" / "mtd-spi-nor-unbind-during-read.yaml")


def splats_of(name: str) -> list[splats.Splat]:
    return splats.parse((LOGS / name).read_text(errors="replace"))


def kasan(name: str) -> splats.Splat:
    return next(s for s in splats_of(name) if s.kind == "kasan")


SPI_NOR_READ = kasan("harness-mtd-unbind-spi-device.log")  # Read in spi_nor_read
DIRMAP_READ = kasan("harness-mtd-unbind-nx-fault.log")  # Read in spi_mem_dirmap_read
CONTROLLER = kasan("harness-mtd-unbind-controller.log")  # Read in dln2_spi_transfer_one
PUT_MTD = kasan("harness-mtd-unplug-close.log")  # Read in __put_mtd_device
REGMAP = kasan("harness-nvmem-in-kernel-consumer.log")  # Read in regmap_raw_read


def run(rep: int, *found: splats.Splat, violations=(), error=None) -> ItemResult:
    item = Item(f"{SCENARIO.name}#{rep}", SCENARIO, rep, SCENARIO.seed + rep)
    result = ItemResult(item, splats=list(found), violations=list(violations), error=error)
    result.status = "error" if error else ("fail" if found or violations else "pass")
    return result


def side(name: str, *runs: ItemResult) -> compare.Side:
    return compare.Side(name, list(runs))


def verdict(base: list[ItemResult], head: list[ItemResult]) -> compare.Comparison:
    return compare.compare(SCENARIO.name, side("base", *base), side("head", *head))


def test_titles_of_one_bug_compare_equal_across_sizes_offsets_and_lines():
    assert splats.normalized_title(
        "suspicious RCU usage at include/linux/rcu_sync.h:34"
    ) == splats.normalized_title("suspicious RCU usage at include/linux/rcu_sync.h:36")
    assert (
        splats.normalized_title("KASAN: slab-use-after-free Read in spi_nor_read.isra.0")
        == SPI_NOR_READ.title
    )
    # the same report again, where another build put the access elsewhere: same bug
    moved = replace(SPI_NOR_READ, excerpt=SPI_NOR_READ.excerpt.replace("size 8", "size 4"))
    assert splats.same_bug(SPI_NOR_READ, moved)


def test_one_freed_object_met_at_two_depths_is_one_bug():
    # spi_mem_dirmap_read is called from spi_nor_read: two runs of the unbind race
    assert "spi_nor_read" in DIRMAP_READ.frames
    assert splats.same_bug(SPI_NOR_READ, DIRMAP_READ)
    assert splats.same_bug(DIRMAP_READ, SPI_NOR_READ)


def test_one_freed_object_met_on_two_paths_is_one_bug():
    # the spi_nor that spi_nor_probe devm-allocated, freed at unbind: read() and close()
    assert splats.kasan_object(SPI_NOR_READ) == ("spi_nor_probe", "device_release_driver_internal")
    assert splats.same_bug(SPI_NOR_READ, PUT_MTD)


def test_different_bugs_stay_different():
    assert not splats.same_bug(SPI_NOR_READ, REGMAP)
    assert not splats.same_bug(SPI_NOR_READ, CONTROLLER)  # the controller, another object
    gpf = next(s for s in splats_of("harness-mtd-unbind-spi-device.log") if s.kind == "oops")
    assert not splats.same_bug(SPI_NOR_READ, gpf)  # another kind


def test_fixed_needs_head_runs_that_base_rate_makes_more_than_luck():
    """Base failed 2 of 3 (a rate of 2/4): a head with the bug passes 3 runs with p = 0.125,
    so 3 clean runs are not "fixed"; 7 are (0.5 ** 7 = 0.0078)."""
    base = [run(0, SPI_NOR_READ), run(1, DIRMAP_READ), run(2)]
    c = verdict(base, [run(i) for i in range(3)])
    assert c.verdict == compare.LIKELY_FIXED
    assert c.evidence.p == 0.125
    assert compare.more_runs(c, bound=10) == ("head", 4)
    c = verdict(base, [run(i) for i in range(7)])
    assert c.verdict == compare.FIXED and compare.more_runs(c, bound=10) is None
    assert c.line().endswith(
        "fixed (p = 0.0078): failed 2/3 on base, passed 7/7 on head; gone on head: "
        "KASAN: slab-use-after-free Read in spi_nor_read"
    )
    # seen once in 3 base runs: 17 clean runs would be needed; the bound stops at 10
    rare = [run(0, SPI_NOR_READ), run(1), run(2)]
    c = verdict(rare, [run(i) for i in range(3)])
    assert compare.more_runs(c, bound=10) == ("head", 7)
    c = verdict(rare, [run(i) for i in range(10)])
    assert compare.more_runs(c, bound=10) is None
    assert c.line().startswith(f"{SCENARIO.name}: likely fixed (p = 0.056): failed 1/3 on base")
    # a failure among the added head runs ends them
    assert compare.changes_verdict(c, run(10, SPI_NOR_READ))
    assert not compare.changes_verdict(c, run(10))


def test_a_regression_is_confirmed_by_running_base_as_often_as_its_rate_on_head_asks():
    once = verdict([run(i) for i in range(3)], [run(0, REGMAP), run(1), run(2)])
    assert once.verdict == compare.REGRESSED
    assert compare.more_runs(once, bound=10) == ("base", 7)  # 1/4 would need 17: bound
    always = verdict([run(i) for i in range(3)], [run(i, REGMAP) for i in range(3)])
    assert compare.more_runs(always, bound=10) == ("base", 1)  # 0.25 ** 3 > 1 %
    confirmed = verdict([run(i) for i in range(4)], [run(i, REGMAP) for i in range(3)])
    assert confirmed.verdict == compare.REGRESSED and compare.more_runs(confirmed, 10) is None
    assert "regressed (p = 0.0039): passed 4/4 on base" in confirmed.line()
    # base's added runs stop at the new bug; then it is not new
    assert compare.changes_verdict(always, run(3, REGMAP))
    assert not compare.changes_verdict(always, run(3, SPI_NOR_READ))
    base = [run(0), run(1), run(2), run(3, REGMAP)]
    seen_on_base = verdict(base, [run(i, REGMAP) for i in range(3)])
    assert seen_on_base.verdict == compare.FLAKY and seen_on_base.evidence is None


def test_regressed_when_a_pass_turns_into_a_splat():
    c = verdict([run(0), run(1), run(2)], [run(0), run(1, REGMAP), run(2)])
    assert c.verdict == compare.REGRESSED
    assert [b.title for b in c.new] == [REGMAP.title]
    assert "passed 3/3 on base, failed 1/3 on head" in c.line()


def test_a_new_splat_is_a_regression_also_when_both_sides_fail():
    c = verdict([run(0, SPI_NOR_READ)] * 3, [run(0, SPI_NOR_READ, REGMAP)] * 3)
    assert c.verdict == compare.REGRESSED
    assert [b.title for b in c.new] == [REGMAP.title]


def test_still_failing_changed_and_flaky():
    same = verdict([run(0, SPI_NOR_READ)] * 3, [run(0, DIRMAP_READ)] * 3)
    assert same.verdict == compare.STILL_FAILING  # one bug, met at another depth
    assert same.line().endswith("same bugs")
    changed = verdict([run(0, SPI_NOR_READ, REGMAP)] * 3, [run(0, SPI_NOR_READ)] * 3)
    assert changed.verdict == compare.CHANGED
    assert [b.title for b in changed.gone] == [REGMAP.title]
    flaky = verdict([run(0, SPI_NOR_READ)] * 3, [run(0, SPI_NOR_READ), run(1), run(2)])
    assert flaky.verdict == compare.FLAKY


def test_unchanged_pass_and_expectations():
    assert verdict([run(0)] * 3, [run(0)] * 3).verdict == compare.UNCHANGED_PASS
    broke = "cycle 0: reader-64k: byte 0 of a 65536-byte read is 0x00, the chip holds 0xa5"
    again = "cycle 0: reader-64k: byte 16 of a 65536-byte read is 0x00, the chip holds 0x11"
    c = verdict([run(0, violations=[broke])] * 3, [run(0, violations=[again])] * 3)
    assert c.verdict == compare.STILL_FAILING  # numbers differ, the expectation is the same


def test_error_names_the_side_and_why():
    c = verdict([run(0)] * 3, [run(0), run(1, error="the guest died during the scenario\n...")])
    assert c.verdict == compare.ERROR
    assert c.error_side == "head"
    assert c.line().endswith("could not run on head: the guest died during the scenario")
    missing = compare.compare(SCENARIO.name, side("base"), side("head", run(0)))
    assert missing.verdict == compare.ERROR and missing.error_side == "base"


def test_table_puts_what_needs_attention_first():
    fixed = verdict([run(0, SPI_NOR_READ)], [run(0)])
    regressed = replace(verdict([run(0)], [run(0, REGMAP)]), scenario="other")
    assert compare.table([fixed, regressed])[0].startswith("other: regressed")


def outcome_for(comparisons, tmp_path) -> SeriesOutcome:
    sides = [
        SideInfo("base", "a" * 40, "Linux 6.12.117", repro="git -C wt checkout a && harness run"),
        SideInfo("head", "b" * 40, "gpio: sim: x", repro="git -C wt checkout b && harness run"),
    ]
    return SeriesOutcome(
        comparisons,
        sides,
        tmp_path,
        1,
        ["harness", "series", "--base", "HEAD", "--series", "x.mbox"],
        left_out={"gpio-sim-plug-cycle": "covers none of the 1 touched file(s)"},
    )


def test_series_results_junit_fails_only_regressions_and_report_is_plain_text(tmp_path):
    fixed = verdict([run(0, SPI_NOR_READ)] * 3, [run(0)] * 4)
    regressed = replace(verdict([run(0)] * 4, [run(0, REGMAP)] * 3), scenario="mtd-unplug")
    series.write_series(tmp_path, outcome_for([fixed, regressed], tmp_path))
    junit = (tmp_path / "junit.xml").read_text()
    assert junit.count("<failure") == 1
    assert 'message="regressed: KASAN: slab-use-after-free Read in regmap_raw_read"' in junit
    assert 'name="base_commit" value="' + "a" * 40 in junit
    assert "<skipped" in junit
    text = (tmp_path / "report.md").read_text()
    assert "fixed (p = 0.0039): failed 3/3 on base, passed 4/4 on head" in text
    assert "regressed (p = 0.0039): passed 4/4 on base, failed 3/3 on head" in text
    assert "p: the chance that the side without the bug still has it" in text
    assert (
        "mtd-unplug: new on head: KASAN: slab-use-after-free Read in regmap_raw_read "
        "(in 3/3 head runs, 0/4 base runs)" in text
    )
    assert "BUG: KASAN: slab-use-after-free in regmap_raw_read" in text  # the excerpt
    assert "gpio-sim-plug-cycle: not run (--affected" in text
    assert "head: git -C wt checkout b && harness run" in text
    summary = (tmp_path / "summary.json").read_text()
    assert '"verdict": "fixed"' in summary and '"status": "fail"' in summary


@pytest.mark.parametrize(
    "touched, chosen",
    [
        (["drivers/spi/spi-dln2.c"], {"mtd-data-integrity", "mtd-spi-nor-unplug-during-read"}),
        (["drivers/gpio/gpio-sim.c", "Documentation/x.rst"], {"gpio-sim-plug-cycle"}),
        (["Documentation/x.rst"], set()),
    ],
)
def test_affected_selects_by_covers(touched, chosen):
    scenarios = [
        load_scenario(ROOT / "scenarios" / f"{name}.yaml")
        for name in ("mtd-data-integrity", "mtd-spi-nor-unplug-during-read", "gpio-sim-plug-cycle")
    ]
    selected, left_out = select(scenarios, touched, affected=True)
    assert {sc.name for sc in selected} == chosen
    assert set(left_out) == {sc.name for sc in scenarios} - chosen
    assert all("covers none of" in why for why in left_out.values())
    assert select(scenarios, touched, affected=False) == (scenarios, {})


def test_an_expectation_broken_by_a_splat_is_not_a_second_bug():
    (uaf, _) = splats_of("harness-gpio-sim-value-map-freed-early.log")
    echo = "cycle 0: kernel tainted B during remove chip0; the rest of this item is skipped"
    c = verdict([run(0)], [run(0, uaf, violations=[echo])])
    assert c.verdict == compare.REGRESSED
    assert [b.title for b in c.new] == ["KASAN: slab-use-after-free Read in __bitmap_replace"]


def test_report_excerpt_keeps_the_reliable_frames():
    (uaf, _) = splats_of("harness-gpio-sim-value-map-freed-early.log")
    text = report.trimmed(uaf.excerpt)
    assert text.splitlines()[0].strip().startswith("BUG: KASAN: slab-use-after-free")
    assert "gpio_sim_get_multiple" in text and "linereq_ioctl" in text
    assert "? " not in text and "Hardware name" not in text


def test_two_objects_one_remove_callback_freed_are_one_bug():
    # unbinding the DLN-2 SPI controller mid-read: one run reads the freed spi_device
    # (in spi_set_cs), another the freed controller (in dln2_spi_transfer_one)
    spi_device = next(
        s
        for s in splats_of("harness-mtd-unbind-controller-spi-device.log")
        if s.title.endswith("spi_set_cs")
    )
    assert splats.kasan_remover(spi_device) == splats.kasan_remover(CONTROLLER) == "dln2_spi_remove"
    assert splats.same_bug(spi_device, CONTROLLER)
    assert splats.kasan_remover(REGMAP) is None  # devres under i2c_device_remove: no driver code
    assert not splats.same_bug(spi_device, SPI_NOR_READ)


def test_kasan_and_a_fault_in_one_function_are_one_bad_access():
    gpf = next(s for s in splats_of("harness-mtd-unbind-controller.log") if s.kind == "oops")
    assert gpf.title == "general protection fault in spi_mem_adjust_op_size"
    kasan_there = replace(
        gpf, kind="kasan", title="KASAN: slab-use-after-free Read in spi_mem_adjust_op_size"
    )
    assert splats.same_bug(gpf, kasan_there)
    assert not splats.same_bug(gpf, SPI_NOR_READ)


def skipped(rep: int) -> ItemResult:
    result = run(rep)
    result.status = "skipped"
    result.error = "skipped: the tree has no include/linux/revocable.h (kernel API revocable)"
    return result


def test_a_side_without_the_api_is_skipped_and_a_series_adding_a_failing_one_regressed():
    both = verdict([skipped(0)], [skipped(0)])
    assert both.verdict == compare.SKIPPED
    assert "base skipped: the tree has no include/linux/revocable.h" in both.line()
    added_broken = verdict([skipped(0)], [run(0, SPI_NOR_READ)])
    assert added_broken.verdict == compare.REGRESSED
    assert added_broken.new and "new on head: KASAN" in added_broken.line()
    assert verdict([skipped(0)], [run(0)]).verdict == compare.SKIPPED
    removed = verdict([run(0, SPI_NOR_READ)], [skipped(0)])
    assert removed.verdict == compare.SKIPPED and "failed 1/1 on base" in removed.line()
    errored = verdict([skipped(0)], [run(0, error="timeout: no result")])
    assert errored.verdict == compare.ERROR and errored.error_side == "head"


def gpf(name: str, function: str) -> splats.Splat:
    return next(s for s in splats_of(name) if s.kind == "oops" and s.title.endswith(function))


def test_a_fault_after_the_kasan_report_is_its_echo_not_a_new_bug():
    """KASAN reports the freed spi-nor; where the corrupted kernel then faults varies
    from run to run (spi_mem_adjust_op_size here, spi_nor_put_device there)."""
    adjust = gpf("harness-mtd-unbind-spi-device.log", "spi_mem_adjust_op_size")
    put = gpf("harness-mtd-unbind-controller.log", "spi_nor_put_device")
    assert not splats.same_bug(adjust, put)
    c = verdict([run(0, SPI_NOR_READ, put)] * 3, [run(0, SPI_NOR_READ, adjust)] * 3)
    assert c.verdict == compare.STILL_FAILING and c.new == []
    # without a KASAN report before it, a fault is a bug of its own
    c = verdict([run(0, put)] * 3, [run(0, adjust)] * 3)
    assert c.verdict == compare.REGRESSED


class Recorded:
    """`harness run` of one side, with building and booting replaced by recorded runs
    (real splats): ``splats_at(side, seed)`` is what the run with that seed showed. Each
    run is its own boot, so the runner's ``enough`` is asked after every run."""

    def __init__(self, repo: Path, base: str, splats_at):
        self.sides = {git(repo, "rev-parse", base): "base", git(repo, "rev-parse", "HEAD"): "head"}
        self.splats_at = splats_at
        self.calls: list[tuple[str, list[int]]] = []  # side, seeds asked for

    def __call__(self, request):
        from harness import stages
        from harness.commands import run as run_command
        from harness.results import expand

        side = self.sides[git(Path(request.tree), "rev-parse", "HEAD")]
        items = expand(stages.load(request), request.repeat, request.seed)
        self.calls.append((side, [i.seed for i in items]))
        results = []
        for item in items:
            found = self.splats_at(side, item.seed)
            result = ItemResult(item, splats=found, status="fail" if found else "pass")
            results.append(result)
            if request.enough and request.enough(results):
                break
        info = report.RunInfo(command=["harness", "run"])
        return run_command.RunOutcome(results, Path(request.out_dir), 0, info)


def series_over(tmp_path, monkeypatch, splats_at, repeat):
    from harness.commands import run as run_command

    repo = tmp_path / "linux"
    (repo / "drivers").mkdir(parents=True)
    (repo / "drivers" / "a.c").write_text("int a;\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    (repo / "drivers" / "a.c").write_text("int a = 1;\n")
    git(repo, "commit", "-q", "-a", "-m", "the series")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    recorded = Recorded(repo, "HEAD~1", splats_at)
    monkeypatch.setattr(run_command, "run_scenarios", recorded)
    request = series.SeriesRequest(
        tree=str(repo),
        scenarios=(SCENARIO.name,),
        out_dir=str(tmp_path / "out"),
        base="HEAD~1",
        head="HEAD",
        repeat=repeat,
    )
    return series.run_series(request), recorded


def test_series_runs_head_more_until_fixed_is_more_than_luck(tmp_path, monkeypatch):
    """Base failed its one run: a head with the bug at that rate (1/2) passes 1 run half
    the time, so head is run until 7 clean runs (p = 0.0078), with the next seeds."""
    seed = SCENARIO.seed
    outcome, recorded = series_over(
        tmp_path, monkeypatch, lambda side, s: [SPI_NOR_READ] if side == "base" else [], repeat=1
    )
    (c,) = outcome.comparisons
    assert c.verdict == compare.FIXED and c.head.n == 7 and outcome.exit_code == 0
    assert recorded.calls == [
        ("base", [seed]),
        ("head", [seed]),
        ("head", list(range(seed + 1, seed + 7))),
    ]
    assert [r.item.id for r in c.head.runs][1:] == [f"{SCENARIO.name}#{i}" for i in range(1, 7)]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "fixed (p = 0.0078): failed 1/1 on base, passed 7/7 on head" in text
    assert (
        "head: mtd-spi-nor-unbind-during-read: likely fixed, p = 0.5 (1/1 against 1 clean): "
        "6 more run(s); ran 6" in text
    )


def test_series_confirms_a_regression_on_base_and_drops_it_when_base_has_the_bug(
    tmp_path, monkeypatch
):
    seed = SCENARIO.seed
    outcome, recorded = series_over(
        tmp_path, monkeypatch, lambda side, s: [REGMAP] if side == "head" else [], repeat=3
    )
    (c,) = outcome.comparisons
    assert c.verdict == compare.REGRESSED and outcome.exit_code == 1
    assert recorded.calls[-1] == ("base", [seed + 3])  # 0.25 ** 3 > 1 %: a fourth base run
    assert "regressed (p = 0.0039): passed 4/4 on base, failed 3/3 on head" in c.line()
    # the fourth base run shows the "new" bug: base had it all along, rarely
    outcome, recorded = series_over(
        tmp_path / "again",
        monkeypatch,
        lambda side, s: [REGMAP] if side == "head" or s == seed + 3 else [],
        repeat=3,
    )
    (c,) = outcome.comparisons
    assert c.verdict == compare.FLAKY and outcome.exit_code == 0
    assert c.line().endswith("failed 1/4 on base, failed 3/3 on head; same bugs")


def test_a_series_whose_files_no_scenario_covers_tests_nothing_and_says_so(tmp_path):
    """The whole command on a repository whose series touches only documentation: no
    build, no boot, exit 5, and the last line says what was left out."""
    from tests.harnesscli import harness

    repo = tmp_path / "linux"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "MAINTAINERS").write_text("base\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    (repo / "Documentation").mkdir()
    (repo / "Documentation" / "gpio.rst").write_text("head\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "docs only")
    out = tmp_path / "out"
    code, output = harness(
        "series",
        "--tree",
        str(repo),
        "--base",
        "HEAD~1",
        "--head",
        "HEAD",
        "--affected",
        "--out",
        str(out),
        env={"HARNESS_CACHE": str(tmp_path / "cache")},
    )
    assert code == Exit.NOTHING_RAN, output
    scenarios = len(list((Path(__file__).resolve().parents[1] / "scenarios").glob("*.yaml")))
    assert output.splitlines()[-1].endswith(
        f"series: nothing was tested ({scenarios} left out by --affected)"
    )
    assert "left out: gpio-sim-plug-cycle: covers none of the 1 touched file(s)" in output
    assert not (out / "base").exists(), "nothing selected: nothing built or booted"


def test_a_series_that_tested_nothing_has_its_own_exit_status(tmp_path):
    """--affected selecting no scenario, or every one skipped on a side: not a pass."""
    from harness.commands.series import exit_code_for

    none = outcome_for([], tmp_path)
    assert exit_code_for(none) == Exit.NOTHING_RAN
    skipped = compare.Comparison(SCENARIO.name, compare.SKIPPED, side("base"), side("head"))
    assert exit_code_for(outcome_for([skipped], tmp_path)) == Exit.NOTHING_RAN
    fixed = verdict([run(0, SPI_NOR_READ)] * 3, [run(0)] * 4)
    assert exit_code_for(outcome_for([fixed, skipped], tmp_path)) == Exit.PASS

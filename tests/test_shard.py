"""Sharding: K/N parsing, a split every job computes alike, balance by measured durations,
and the durations table refreshed from a run's summary.json."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import shard
from harness.cli import main
from harness.results import expand
from harness.scenario import load_scenarios, resolve

TABLE = shard.load_durations()


@pytest.fixture(scope="module")
def items():
    return expand(load_scenarios(resolve([])), None, None)


@pytest.mark.parametrize("text,expected", [("1/1", (1, 1)), ("2/4", (2, 4)), (" 3 / 3 ", (3, 3))])
def test_parse(text, expected):
    got = shard.parse(text)
    assert (got.index, got.total) == expected and str(got) == f"{expected[0]}/{expected[1]}"


@pytest.mark.parametrize("text", ["0/4", "5/4", "2", "a/b", "1/0", "-1/2"])
def test_parse_refuses_with_the_form(text):
    with pytest.raises(ValueError, match="K/N|1..N"):
        shard.parse(text)


@pytest.mark.parametrize("total", [1, 2, 3, 4, 7, 30])
def test_every_item_in_exactly_one_shard_and_the_same_split_every_time(items, total):
    times = shard.timing(TABLE, "tcg")
    plan = shard.assign(items, total, times)
    assert set(plan) == {i.id for i in items}
    assert set(plan.values()) <= set(range(1, total + 1))
    assert shard.assign(list(reversed(items)), total, times) == plan  # order does not matter


def test_the_shipped_table_measures_every_scenario_the_default_tree_runs(items):
    """Those that need an API 6.12 lacks (revocable) are skipped there and cost 30 s."""
    measured = TABLE["tcg"]["scenarios"]
    assert {i.scenario.name for i in items if not i.scenario.needs} <= set(measured)
    assert TABLE["tcg"]["boot_s"] > 0


@pytest.mark.parametrize("total", [2, 4])
def test_shards_are_balanced_by_the_measured_durations(items, total):
    """Longest-first is within the longest item of the perfect split (LPT's bound)."""
    times = shard.timing(TABLE, "tcg")
    plan = shard.assign(items, total, times)
    loads = [
        shard.expected_seconds([i for i in items if plan[i.id] == k], times)
        for k in range(1, total + 1)
    ]
    perfect = shard.expected_seconds(items, times) / total
    longest = max(times.cost(i.scenario.name) for i in items) + times.boot_s
    assert max(loads) <= perfect + longest, loads


def test_a_shard_boots_a_command_line_once_if_it_can(items):
    """With boots dear, the odd command line gets a shard to itself and the two items
    that share a command line share the other shard's one boot (160 s, not 260 s)."""
    times = shard.Timing(boot_s=100.0, scenarios={})
    odd = next(i for i in items if i.scenario.cmdline)
    plain = [i for i in items if not i.scenario.cmdline][:2]
    plan = shard.assign([*plain, odd], 2, times)
    assert plan[plain[0].id] == plan[plain[1].id] != plan[odd.id]


def test_unmeasured_scenarios_and_kvm_borrow_defaults():
    times = shard.timing({"tcg": {"boot_s": 20, "scenarios": {"a": {"duration_s": 5}}}}, "kvm")
    assert times.boot_s == 20 and times.cost("a") == 5
    assert times.cost("never-measured") == shard.UNKNOWN_SCENARIO_S
    assert shard.timing({}, "tcg").boot_s == shard.UNKNOWN_BOOT_S
    assert shard.table_accel("auto") == "tcg" and shard.table_accel("kvm") == "kvm"


def test_a_scenario_that_ends_its_boot_costs_a_boot_more():
    times = shard.timing(
        {"tcg": {"boot_s": 20, "scenarios": {"crash": {"duration_s": 5, "ends_boot": True}}}},
        "tcg",
    )
    assert times.cost("crash") == 25


def _summary(items: list[dict], boots: list[dict]) -> dict:
    return {"items": items, "boots": boots}


def test_measured_from_a_summary_and_refreshed_keeps_what_it_did_not_measure():
    summary = _summary(
        [
            {"id": "a#0", "scenario": "a", "status": "pass", "duration_s": 10.0, "boot": 1},
            {"id": "a#1", "scenario": "a", "status": "fail", "duration_s": 20.0, "boot": 1},
            {"id": "b", "scenario": "b", "status": "fail", "duration_s": 7.0, "boot": 1},
            {"id": "c", "scenario": "c", "status": "error", "duration_s": 300.0, "boot": 2},
        ],
        [
            {"index": 1, "accel": "tcg", "seconds_to_ready": 21.0, "ended_by": "b"},
            {"index": 2, "accel": "tcg", "seconds_to_ready": 23.0, "ended_by": "c"},
        ],
    )
    fresh = shard.measured([summary])
    assert fresh == {
        "tcg": {
            "boot_s": 22.0,
            "scenarios": {
                "a": {"duration_s": 15.0, "ends_boot": False, "runs": 2},
                "b": {"duration_s": 7.0, "ends_boot": True, "runs": 1},
            },
        }
    }
    old = {"tcg": {"boot_s": 30, "scenarios": {"z": {"duration_s": 1}, "a": {"duration_s": 99}}}}
    table = shard.refreshed(old, fresh)
    assert table["tcg"]["scenarios"]["z"] == {"duration_s": 1}
    assert table["tcg"]["scenarios"]["a"]["duration_s"] == 15.0
    assert table["tcg"]["boot_s"] == 22.0 and "kvm" not in table
    assert "harness durations" in table["about"]


def test_merged_summaries_count_boots_per_shard():
    """Two shards both have a boot 1: each item counts under its own shard's boot."""
    summary = _summary(
        [
            {"id": "a", "scenario": "a", "status": "pass", "duration_s": 4, "boot": 1, "shard": 1},
            {"id": "b", "scenario": "b", "status": "pass", "duration_s": 6, "boot": 1, "shard": 2},
        ],
        [
            {"index": 1, "accel": "tcg", "seconds_to_ready": 20.0, "shard": 1},
            {"index": 1, "accel": "kvm", "seconds_to_ready": 5.0, "shard": 2},
        ],
    )
    fresh = shard.measured([summary])
    assert set(fresh["tcg"]["scenarios"]) == {"a"} and set(fresh["kvm"]["scenarios"]) == {"b"}


def test_durations_file_is_json_with_a_note():
    data = json.loads(Path(shard.DURATIONS_FILE).read_text())
    assert "about" in data


def test_items_skipped_on_this_kernel_weigh_nothing(items):
    """Revocable items are skipped on 6.12: they are placed (a skipped testcase each) but
    must not take a shard's time from the items that run."""
    times = shard.timing(TABLE, "tcg")
    free = frozenset(i.scenario.name for i in items if i.scenario.needs)
    assert free
    plan = shard.assign(items, 4, times, free)
    assert set(plan) == {i.id for i in items}
    loads = [
        shard.expected_seconds([i for i in items if plan[i.id] == k], times, free)
        for k in range(1, 5)
    ]
    ran = [i for i in items if i.scenario.name not in free]
    assert shard.expected_seconds(items, times, free) == shard.expected_seconds(ran, times)
    assert sum(loads) >= shard.expected_seconds(ran, times)


def test_items_that_ended_their_boot_run_last(items):
    """On 6.12 the MTD unbinds and the in-kernel nvmem consumer taint the kernel: run
    first, each would cost a reboot for the items behind it."""
    times = shard.timing(TABLE, "tcg")
    ordered = shard.boot_order(items, times)
    ends = [bool(times.scenarios.get(i.scenario.name, {}).get("ends_boot")) for i in ordered]
    assert any(ends) and ends == sorted(ends)
    assert sorted(i.id for i in ordered) == sorted(i.id for i in items)
    kept = [i for i in ordered if not times.scenarios.get(i.scenario.name, {}).get("ends_boot")]
    assert kept == [i for i in items if i in kept]  # the others keep their order


def test_a_later_summary_replaces_a_scenarios_figure_and_boots_pool():
    """Refreshing from the full run and then a re-run of one changed scenario."""
    full = _summary(
        [{"id": "a", "scenario": "a", "status": "pass", "duration_s": 130.0, "boot": 1}],
        [{"index": 1, "accel": "tcg", "seconds_to_ready": 6.0}],
    )
    rerun = _summary(
        [{"id": "a", "scenario": "a", "status": "pass", "duration_s": 27.0, "boot": 1}],
        [{"index": 1, "accel": "tcg", "seconds_to_ready": 10.0}],
    )
    fresh = shard.measured([full, rerun])
    assert fresh["tcg"]["scenarios"]["a"]["duration_s"] == 27.0
    assert fresh["tcg"]["boot_s"] == 8.0


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"items": [', ":1: not valid JSON (Expecting value, column 12)"),
        ("[1, 2]", ":1: a summary.json is a JSON object, this is a JSON array"),
        ('{"items": {"a": 1}}', ":1: 'items' is not a JSON array"),
        ('{"items": [{"id": "a", "status": "pass"}]}', ":1: items[0] has no valid 'scenario'"),
        ('{"boots": [{"index": "1", "accel": "tcg"}]}', ":1: boots[0] has no valid 'index'"),
    ],
)
def test_durations_refuses_what_is_not_a_summary_with_file_line_and_fix(tmp_path, text, message):
    bad = tmp_path / "summary.json"
    bad.write_text(text)
    table = tmp_path / "durations.json"
    result = CliRunner().invoke(main, ["durations", str(bad), "--file", str(table)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert f"error: {bad}{message}" in result.output
    assert "pass a summary.json that harness run or harness merge wrote" in result.output
    assert not table.exists()


def test_a_durations_table_that_is_not_one_is_refused(tmp_path):
    table = tmp_path / "durations.json"
    table.write_text('{"tcg": [1]}')
    with pytest.raises(ValueError, match=f"{table}:1: 'tcg' is not a JSON object"):
        shard.load_durations(table)
    table.write_text("[]")
    with pytest.raises(ValueError, match="this is a JSON array"):
        shard.load_durations(table)
    assert shard.load_durations(tmp_path / "none.json") == {}

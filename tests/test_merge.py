"""harness merge over shard directories written by the real report writer: every testcase
once with its shard, an unreported item an error, shards of different runs refused."""

import dataclasses
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import report, shard, stages
from harness.cli import main
from harness.commands import merge
from harness.commands import run as run_command
from harness.results import BootRecord, ItemResult, expand
from harness.scenario import load_scenarios, resolve
from harness.splats import parse
from harness.status import Exit

LOGS = Path(__file__).parent / "data" / "logs"
SCENARIOS = ["gpio-sim-plug-cycle", "gpio-sim-remove-under-readers", "mtd-data-integrity"]


def _write_shard(
    out: Path,
    index: int,
    total: int,
    repeat: int = 2,
    status: str = "pass",
    outside: int = 1,
    kernel: dict | None = None,
):
    """What `harness run --shard index/total` leaves, with the real plan and writer
    (``outside``: kernel reports of a boot no item could take; ``kernel`` replaces
    properties that name the kernel it booted)."""
    request = run_command.RunRequest(scenarios=tuple(SCENARIOS), repeat=repeat)
    request = dataclasses.replace(request, shard=shard.Shard(index, total))
    info = report.RunInfo(command=["harness", "run", "--shard", f"{index}/{total}"])
    info.properties.update({"config_hash": "abc", "accelerator": f"tcg: shard {index}"})
    info.properties.update({"tree_commit": "c0ffee", "kernel_artifact_sha256": "5a5a"})
    info.properties.update(kernel or {})
    every = expand(load_scenarios(resolve(SCENARIOS)), repeat, None)
    items = run_command.shard_items(request, every, info, stages.measured_times(request))
    results = [ItemResult(i, status=status, duration_s=3.0, boot=1) for i in items]
    splats = parse((LOGS / "harness-nvmem-in-kernel-consumer.log").read_text())[:outside]
    boots = [BootRecord(1, "c.log", (), 20.0, "done", accel="tcg", outside_splats=splats)]
    report.write(out, results, boots, info)
    return items


def _cases(out: Path) -> dict[str, ET.Element]:
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    return {c.get("name"): c for c in suite.iter("testcase")}


def test_two_shards_merge_into_every_testcase_once_with_its_shard(tmp_path):
    one = _write_shard(tmp_path / "s1", 1, 2)
    two = _write_shard(tmp_path / "s2", 2, 2, status="fail")
    merged, shards = merge.merge([tmp_path / "s1", tmp_path / "s2"])
    merge.write(tmp_path / "out", merged, shards, ["harness", "merge"])
    cases = _cases(tmp_path / "out")
    ids = [i.id for i in one] + [i.id for i in two]
    assert len(ids) == 6 and set(ids) == {f"{s}#{r}" for s in SCENARIOS for r in (0, 1)}
    for item in one:
        props = {p.get("name"): p.get("value") for p in cases[item.id].iter("property")}
        assert props["shard"] == "1/2"
        assert cases[item.id].find("system-out").text.startswith("shard: 1/2")
    outside = [n for n in cases if n.startswith("kernel log outside scenarios")]
    assert sorted(outside) == [
        "kernel log outside scenarios (shard 1/2)",
        "kernel log outside scenarios (shard 2/2)",
    ]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [i["id"] for i in summary["items"]] == [
        i.id for i in expand(load_scenarios(resolve(SCENARIOS)), 2, None)
    ]
    assert {i["shard"] for i in summary["items"] if i["id"] in {x.id for x in two}} == {2}
    assert summary["counts"] == {"pass": len(one), "fail": len(two), "error": 0, "skipped": 0}
    assert merged.exit_code == Exit.FAIL
    assert summary["properties"]["config_hash"] == "abc"
    assert summary["properties"]["accelerator"] == "1/2: tcg: shard 1; 2/2: tcg: shard 2"
    suite = ET.parse(tmp_path / "out" / "junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == str(len(cases)) and suite.get("failures") == "2"


def test_a_shard_that_left_nothing_is_an_error_per_item_it_owed(tmp_path):
    _write_shard(tmp_path / "s1", 1, 3)
    owed = _write_shard(tmp_path / "s2", 2, 3)
    (tmp_path / "s2" / "summary.json").unlink()  # the job died before writing
    _write_shard(tmp_path / "s3", 3, 3)
    merged, shards = merge.merge([tmp_path / d for d in ("s1", "s2", "s3")])
    assert merged.exit_code == Exit.NO_VERDICT
    errors = {i["id"]: i["error"] for i in merged.items if i["status"] == "error"}
    assert set(errors) == {i.id for i in owed} and owed
    assert all("shard 2/3 left no results" in e for e in errors.values())
    merge.write(tmp_path / "out", merged, shards, ["harness", "merge"])
    cases = _cases(tmp_path / "out")
    assert all(cases[i.id].find("error") is not None for i in owed)


def test_a_shard_directory_not_given_at_all_is_missing_too(tmp_path):
    _write_shard(tmp_path / "s1", 1, 2)
    merged, _ = merge.merge([tmp_path / "s1"])
    assert merged.exit_code == Exit.NO_VERDICT
    assert merged.shards[1]["harness_error"] == "no results"


def test_all_passing_shards_exit_0(tmp_path):
    _write_shard(tmp_path / "s1", 1, 2, outside=0)
    _write_shard(tmp_path / "s2", 2, 2, outside=0)
    assert merge.merge([tmp_path / "s1", tmp_path / "s2"])[0].exit_code == Exit.PASS


def test_a_kernel_report_no_item_took_fails_the_merged_run(tmp_path):
    _write_shard(tmp_path / "s1", 1, 2, outside=0)
    _write_shard(tmp_path / "s2", 2, 2, outside=1)  # every item passed, the boot did not
    merged = merge.merge([tmp_path / "s1", tmp_path / "s2"])[0]
    assert merged.counts["pass"] == len(merged.items) and merged.outside_splats == 1
    assert merged.exit_code == Exit.FAIL


def test_shards_of_different_runs_are_refused(tmp_path):
    _write_shard(tmp_path / "s1", 1, 2, repeat=2)
    _write_shard(tmp_path / "s2", 2, 2, repeat=3)
    with pytest.raises(merge.MergeError, match="different runs"):
        merge.merge([tmp_path / "s1", tmp_path / "s2"])


def test_the_same_shard_twice_is_refused(tmp_path):
    _write_shard(tmp_path / "a", 1, 2)
    _write_shard(tmp_path / "b", 1, 2)
    with pytest.raises(merge.MergeError, match="shard 1/2 given twice"):
        merge.merge([tmp_path / "a", tmp_path / "b"])


def test_an_unsharded_run_is_refused(tmp_path):
    _write_shard(tmp_path / "s1", 1, 1)
    summary = json.loads((tmp_path / "s1" / "summary.json").read_text())
    (tmp_path / "s1" / "summary.json").write_text(json.dumps({**summary, "shard": None}))
    with pytest.raises(merge.MergeError, match="not the result of a sharded run"):
        merge.merge([tmp_path / "s1"])


def test_cli_errors_are_messages_with_status_2(tmp_path):
    _write_shard(tmp_path / "s1", 1, 1, outside=0)
    runner = CliRunner()
    result = runner.invoke(main, ["merge", str(tmp_path / "s1"), "--out", str(tmp_path / "s1")])
    assert result.exit_code == 2 and "is one of the shard directories" in result.output
    result = runner.invoke(main, ["merge", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no such directory" in result.output
    assert "Traceback" not in result.output
    ok = runner.invoke(main, ["merge", str(tmp_path / "s1"), "--out", str(tmp_path / "o")])
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize(
    "key, ours, theirs",
    [
        ("tree_commit", "c0ffee", "deadbeef"),
        ("kernel_artifact_sha256", "5a5a", "7b7b"),
        ("config_hash", "abc", "def"),
    ],
)
def test_shards_of_different_kernels_are_refused_naming_both(tmp_path, key, ours, theirs):
    _write_shard(tmp_path / "s1", 1, 2)
    _write_shard(tmp_path / "s2", 2, 2, kernel={key: theirs})
    dirs = [str(tmp_path / "s1"), str(tmp_path / "s2")]
    result = CliRunner().invoke(main, ["merge", *dirs, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert f"{dirs[1]} ran a kernel of {key} {theirs}, {dirs[0]} one of {ours}" in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda junit: junit.unlink(), "cannot read: No such file or directory"),
        (lambda junit: junit.write_text(junit.read_text()[:200]), "is not XML"),
        (lambda junit: junit.write_text("<testsuites/>"), "has no <testsuite>"),
    ],
)
def test_a_shard_without_a_readable_junit_xml_is_an_error_per_item(tmp_path, damage, problem):
    _write_shard(tmp_path / "s1", 1, 2)
    lost = _write_shard(tmp_path / "s2", 2, 2)
    damage(tmp_path / "s2" / "junit.xml")
    dirs = [str(tmp_path / "s1"), str(tmp_path / "s2")]
    result = CliRunner().invoke(main, ["merge", *dirs, "--out", str(tmp_path / "o")])
    assert result.exit_code == Exit.NO_VERDICT, result.output
    assert f"{dirs[1]}/junit.xml {problem}" in result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    errors = {i["id"]: i["error"] for i in summary["items"] if i["status"] == "error"}
    assert set(errors) == {i.id for i in lost}
    assert all("shard 2/2's junit.xml" in e for e in errors.values())
    assert all("the summary says pass" in e for e in errors.values())
    cases = _cases(tmp_path / "o")
    assert all(cases[i.id].find("error") is not None for i in lost)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s["shard"].pop("plan"), "'shard' has no 'plan' (item id -> shard)"),
        (lambda s: s.update(items={"a": 1}), "'items' is not a JSON array"),
        (lambda s: s.update(items=[{"id": 1}]), "items[0] has no valid 'id'"),
        (lambda s: s["shard"].update(index=3), "'shard' has no valid 'index' and 'total'"),
        (lambda s: s.update(properties=[]), "'properties' is not a JSON object"),
    ],
)
def test_a_summary_that_is_not_a_shards_is_refused_with_file_and_line(tmp_path, change, message):
    _write_shard(tmp_path / "s1", 1, 1)
    path = tmp_path / "s1" / "summary.json"
    summary = json.loads(path.read_text())
    change(summary)
    path.write_text(json.dumps(summary))
    result = CliRunner().invoke(main, ["merge", str(tmp_path / "s1"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert f"error: {path}:1: {message}" in result.output


def test_a_summary_that_is_not_json_is_refused_with_its_line(tmp_path):
    _write_shard(tmp_path / "s1", 1, 1)
    path = tmp_path / "s1" / "summary.json"
    path.write_text('{\n  "shard": [1,\n}')
    result = CliRunner().invoke(main, ["merge", str(tmp_path / "s1"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and f"error: {path}:3: not valid JSON" in result.output


def test_merged_shards_as_one_kcidb_document(tmp_path):
    from harness import kcidb

    _write_shard(tmp_path / "s1", 1, 2)
    _write_shard(tmp_path / "s2", 2, 2, status="fail")
    out, doc = tmp_path / "merged", tmp_path / "kcidb.json"
    result = CliRunner().invoke(
        main,
        [
            "merge",
            str(tmp_path / "s1"),
            str(tmp_path / "s2"),
            "--out",
            str(out),
            "--kcidb",
            str(doc),
        ],
    )
    assert result.exit_code == 1, result.output
    tests = kcidb.validate(json.loads(doc.read_text()))["tests"]
    assert len(tests) == len(SCENARIOS) * 2 + 2 and {t["status"] for t in tests} == {"PASS", "FAIL"}
    # each shard's boot reported outside every item: a failed kernel_log test per shard
    logs = [t for t in tests if t["path"] == "lifetime.kernel_log"]
    assert [t["misc"]["shard"] for t in logs] == [1, 2] and len({t["id"] for t in tests}) == 8

"""Real boots: one artifact, run whole and in two shards; the merge equals the whole run.

The kernel the boot tier already built (same cache) is packed with
`harness build --artifact`, and every run here boots that file, with no tree:
the results must carry the artifact's build record, the two shards must split
the items between them, and `harness merge` of the shards must report the same
testcases with the same verdicts as the unsharded run. A shard left out of the
merge must turn its items into errors (exit 4), never into a green result.
"""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.harnesscli import harness

pytestmark = pytest.mark.boot

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = [
    "gpio-sim-remove-under-readers",
    str(ROOT / "tests" / "scenarios" / "selftest-warning.yaml"),
    str(ROOT / "tests" / "scenarios" / "selftest-leak.yaml"),
]


def verdicts(out: Path) -> dict[str, str]:
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    out = {}
    for case in suite.iter("testcase"):
        if case.find("error") is not None:
            out[case.get("name")] = "error"
        elif case.find("failure") is not None:
            out[case.get("name")] = "fail"
        elif case.find("skipped") is not None:
            out[case.get("name")] = "skipped"
        else:
            out[case.get("name")] = "pass"
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("shards")
    kernel = base / "kernel.tar.gz"
    code, output = harness("build", "--artifact", str(kernel))
    assert code == 0, output[-3000:]
    record = json.loads(output[output.index("{") : output.rindex("}") + 1])
    whole_code, whole_out = harness(
        "run", *SCENARIOS, "--kernel", str(kernel), "--out", str(base / "whole")
    )
    shard_codes = []
    for k in (1, 2):
        code, output = harness(
            "run",
            *SCENARIOS,
            "--kernel",
            str(kernel),
            "--shard",
            f"{k}/2",
            "--out",
            str(base / f"s{k}"),
        )
        shard_codes.append((code, output))
    return base, record, (whole_code, whole_out), shard_codes


def test_the_whole_run_boots_the_artifact_and_carries_its_build_record(runs):
    base, record, (code, output), _ = runs
    assert code == 1, output[-3000:]  # the self-tests fail; the gpio scenario passes
    summary = json.loads((base / "whole" / "summary.json").read_text())
    assert summary["build"]["config_hash"] == record["config_hash"]
    assert summary["build"]["tree"] == record["tree"]
    assert summary["build"]["objects_compiled"] == record["objects_compiled"]
    assert summary["properties"]["kernel_artifact"] == str(base / "kernel.tar.gz")
    assert summary["properties"]["kernel_release"] == record["kernel_release"]
    assert summary["build"]["kernel_image"] != record["kernel_image"]  # the unpacked copy
    assert (
        "--kernel" in summary["items"][0]["repro"] and "--tree" not in summary["items"][0]["repro"]
    )
    assert "build:" not in output  # nothing was configured or built


def test_two_shards_split_the_items(runs):
    base, _, _, shard_codes = runs
    owned = []
    for k, (code, output) in enumerate(shard_codes, 1):
        assert code in (0, 1), output[-3000:]
        summary = json.loads((base / f"s{k}" / "summary.json").read_text())
        assert summary["shard"]["index"] == k and summary["shard"]["total"] == 2
        ids = [i["id"] for i in summary["items"]]
        assert ids, f"shard {k}/2 got no items"
        owned += ids
    assert sorted(owned) == sorted(verdicts(base / "whole"))


def test_merge_gives_the_unsharded_testcases_and_verdicts(runs):
    base, *_ = runs
    code, output = harness(
        "merge", str(base / "s1"), str(base / "s2"), "--out", str(base / "merged")
    )
    assert code == 1, output
    merged = verdicts(base / "merged")
    whole = verdicts(base / "whole")
    per_item = {k: v for k, v in merged.items() if "(shard " not in k}
    assert per_item == {k: v for k, v in whole.items() if k != "kernel log outside scenarios"}
    assert per_item == {
        "gpio-sim-remove-under-readers": "pass",
        "selftest-warning": "fail",
        "selftest-leak": "fail",
    }


def test_a_missing_shard_is_an_error_not_a_pass(runs):
    base, *_ = runs
    code, output = harness("merge", str(base / "s1"), "--out", str(base / "half"))
    assert code == 4, output
    summary = json.loads((base / "half" / "summary.json").read_text())
    lost = [i for i in summary["items"] if i["shard"] == 2]
    assert lost and all(i["status"] == "error" for i in lost)

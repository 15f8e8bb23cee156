"""Real boots: the accelerator fallbacks still give verdicts, and two builds on one cache.

Each test runs one short scenario in its own harness run on the kernel the
boot tier already built (same cache). Forcing the paths:
- the probe cannot meet a bound of 0.01 s, so auto must choose TCG up front;
- with the probe's verdict recorded as "KVM works" (the situation on hosts
  where a probe passes and the real boot then hangs) and a silence bound of
  1 ms, the first KVM boot prints nothing in time: the harness must kill it,
  say why, and run the scenario under TCG.
"""

import json
import os
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import accel
from tests.harnesscli import harness

pytestmark = pytest.mark.boot

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = "gpio-sim-remove-under-readers"
KVM_USABLE = os.access("/dev/kvm", os.R_OK | os.W_OK)


@pytest.fixture(scope="module")
def kernel_image() -> Path:
    code, output = harness("build")
    assert code == 0, output
    record = json.loads(output[output.index("{") : output.rindex("}") + 1])
    return Path(record["kernel_image"])


def run_one(out: Path, env: dict) -> tuple[int, str, dict, dict]:
    code, output = harness("run", SCENARIO, "--out", str(out), env=env)
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    return code, output, props, json.loads((out / "summary.json").read_text())


@pytest.mark.skipif(not KVM_USABLE, reason="no accessible /dev/kvm: auto is TCG without a probe")
def test_probe_that_cannot_pass_means_tcg_and_a_verdict(tmp_path, kernel_image):
    env = {"HARNESS_ACCEL": "auto", "HARNESS_KVM_PROBE_TIMEOUT": "0.01"}
    code, output, props, summary = run_one(tmp_path, env)
    assert code in (0, 1), output[-3000:]
    assert props["accelerator"].startswith("tcg: KVM probe failed"), props["accelerator"]
    assert [b["accel"] for b in summary["boots"]] == ["tcg"]
    assert summary["items"][0]["status"] in ("pass", "fail")


@pytest.mark.skipif(not KVM_USABLE, reason="no accessible /dev/kvm: KVM is never chosen")
def test_silent_kvm_boot_is_killed_and_rerun_under_tcg(tmp_path, kernel_image):
    record = accel.verdict_path(kernel_image, accel.probe_timeout())
    saved = record.read_bytes() if record.exists() else None
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"works": True, "evidence": "recorded by the test"}))
    try:
        env = {"HARNESS_ACCEL": "auto", "HARNESS_KVM_SILENCE_TIMEOUT": "0.001"}
        code, output, props, summary = run_one(tmp_path, env)
    finally:
        if saved is None:
            record.unlink()
        else:
            record.write_bytes(saved)
    assert code in (0, 1), output[-3000:]
    boots = summary["boots"]
    assert [(b["accel"], b["ended"]) for b in boots][0] == ("kvm", "kvm-failed")
    assert [b["accel"] for b in boots[1:]] == ["tcg"], boots
    assert "no kernel output within 0.001 s" in boots[0]["left_because"]
    assert boots[1]["why"].startswith("reboot: KVM failed in boot 1")
    assert props["accelerator"].startswith("tcg: boot 1: the KVM boot printed no kernel output")
    assert "booting again under TCG" in output
    item = summary["items"][0]
    assert item["status"] in ("pass", "fail") and item["boot"] == 2, item["error"]
    assert "--accel tcg" in item["repro"]


def test_two_builds_at_once_on_one_cache_both_succeed(kernel_image):
    outputs: dict[int, tuple[int, str]] = {}

    def build(index: int) -> None:
        outputs[index] = harness("build")

    threads = [threading.Thread(target=build, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(code == 0 for code, _ in outputs.values()), outputs
    waited = [out for _, out in outputs.values() if "waiting for the " in out]
    assert waited, "one build must have waited for the other's lock"
    records = [json.loads(out[out.index("{") : out.rindex("}") + 1]) for _, out in outputs.values()]
    assert {r["kernel_image"] for r in records} == {str(kernel_image)}

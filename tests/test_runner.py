"""Guest runner decisions that need no VM: which taint bits are a result."""

import dataclasses
import json
from pathlib import Path

import pytest

from guest import runner

OOT, B, D, W = 1 << 12, 1 << 5, 1 << 7, 1 << 9


def test_loading_a_helper_module_is_not_a_result():
    assert runner.taint_gained(0, OOT) == ""


def test_kasan_oops_and_warn_are_reported_by_letter():
    assert runner.taint_gained(OOT, OOT | B | D) == "BD"
    assert runner.taint_gained(0, W) == "W"


def test_only_new_bits_count():
    assert runner.taint_gained(W, W | OOT) == ""
    assert runner.taint_gained(W | B, W | B | D) == "D"


PROC = Path(__file__).resolve().parent / "data" / "detectors"


def test_lockdep_that_turned_itself_off_is_a_detector_off():
    """/proc/lockdep_stats of a real 6.12 harness kernel before and after one lockdep report
    (splat_selftest abba): lockdep does not taint, debug_locks is the only trace."""
    on = (PROC / "lockdep_stats-6.12-on.txt").read_text()
    off = (PROC / "lockdep_stats-6.12-off.txt").read_text()
    assert runner.detectors_off(on, "-1") == []
    (why,) = runner.detectors_off(off, "-1")
    assert "lockdep turned itself off" in why


def test_a_boot_whose_kasan_has_fired_is_not_used_for_another_item():
    """KASAN is one-shot: once it reported (taint B), later bugs of that boot go unreported
    (tests/data/detectors/lkdtm-kasan-twice-one-shot.log), so the next item needs a boot."""
    (why,) = runner.detectors_off("", "-1", OOT | W | B)
    assert "KASAN has reported in this boot (taint B)" in why
    assert runner.detectors_off("", "-1", OOT | W) == []


def test_a_used_up_hung_task_detector_is_off_and_a_missing_one_is_not():
    assert runner.detectors_off("", "0") == [
        "the hung-task detector used up its reports (hung_task_warnings is 0)"
    ]
    assert runner.detectors_off("", "") == []  # neither built in: nothing to switch off


def _item_of(name: str):
    from harness.results import expand
    from harness.scenario import load_scenarios, resolve

    (item,) = expand(load_scenarios(resolve([name])), 1, 1)
    return item


def _run_of(name: str):
    item = _item_of(name)
    return runner.ScenarioRun(runner.decode_item(json.loads(json.dumps(item.plan_entry()))), {})


def test_an_emulator_failing_in_an_action_is_a_harness_error_not_a_kernel_result(monkeypatch):
    """A GadgetError from an adapter's unplug used to kill the action thread silently: no
    violation, and the kernel was blamed for consumers that "still ran"."""
    from guest.adapters import gadget

    run = _run_of("nvmem-usb-unplug-during-read")
    action = next(a for a in run.sc.actions if a.do == "unplug")

    def broken(action: dict, step: int) -> dict:
        raise gadget.GadgetError("ep0: unexpected setup request while unbinding")

    monkeypatch.setattr(run, "_perform", broken)
    monkeypatch.setattr(runner, "event", lambda *a, **k: None)
    monkeypatch.setattr(run, "_midread", lambda workers, fixture: {})
    with pytest.raises(runner.HarnessError, match="GadgetError: ep0: unexpected setup"):
        run.run_action(dataclasses.replace(action, at=None, after_worker=None), [], 0.0)
    assert run.violations == []  # nothing is said about the kernel


def test_a_harness_error_in_a_cycle_leaves_the_item_without_verdict_with_its_traceback(
    monkeypatch,
):
    from harness.results import ItemResult, decide

    run = _run_of("nvmem-usb-unplug-during-read")
    torn_down = []
    monkeypatch.setattr(run, "setup_fixtures", lambda: None)
    monkeypatch.setattr(run, "teardown_fixtures", lambda: torn_down.append(True))
    monkeypatch.setattr(runner, "event", lambda *a, **k: None)

    def broken() -> None:
        raise runner.HarnessError("unplug eeprom0: GadgetError: ep0: unexpected setup request")

    monkeypatch.setattr(run, "run_cycle", broken)
    error, _ = run._cycles()
    assert error.startswith("harness error:\nTraceback (most recent call last):")
    assert "HarnessError: unplug eeprom0: GadgetError" in error and torn_down
    result = ItemResult(_item_of("nvmem-usb-unplug-during-read"), error=error)
    decide(result)
    assert result.status == "error", "the harness's fault is no verdict, never a kernel fail"


def test_a_template_no_fixture_gives_is_a_harness_error_not_a_path():
    """It used to stay in the path, so the worker failed to open "{eeprom0.nvme}" and the
    item read as a kernel failure."""
    run = _run_of("nvmem-usb-unplug-during-read")
    with pytest.raises(runner.HarnessError, match=r"no fixture gives \{eeprom0.nvme\}"):
        run.resolve("{eeprom0.nvme}")
    assert run.resolve("/dev/gpiochip0") == "/dev/gpiochip0"


def test_items_of_a_boot_whose_lockdep_was_already_off_get_no_verdict(tmp_path, monkeypatch):
    """Off before the boot's first item (a report during boot): a reboot gives the same, so
    every item is reported unrun with why, never as a pass without lockdep."""
    from harness.results import expand
    from harness.scenario import load_scenarios, resolve

    items = expand(load_scenarios(resolve(["gpio-sim-plug-cycle"])), 2, 1)
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "result_dir": str(tmp_path / "guest"),
                "modules": {},
                "items": [i.plan_entry() for i in items],
            }
        )
    )
    proc = {
        "/proc/lockdep_stats": (PROC / "lockdep_stats-6.12-off.txt").read_text(),
        "/proc/sys/kernel/hung_task_warnings": "-1\n",
    }
    monkeypatch.setattr(runner, "_read", proc.__getitem__)
    monkeypatch.setattr(runner, "taint", lambda: OOT)
    events = []
    monkeypatch.setattr(runner, "event", lambda kind, **f: events.append((kind, f.get("id"))))
    assert runner.main(["runner.py", str(plan)]) == 0
    for item in items:
        result = json.loads((tmp_path / "guest" / f"{item.id}.json").read_text())
        assert result["error"].startswith("not run: lockdep turned itself off")
        assert ("start", item.id) in events and ("end", item.id) in events


def test_a_consumer_still_running_after_its_provider_went_is_named_with_its_fixture(monkeypatch):
    """The check behind wait-workers, with a worker whose thread never returns."""
    run = _run_of("gpio-sim-remove-under-readers")
    spec = run.sc.workers[0]

    class Stuck:
        name = spec.name

        def __init__(self):
            self.spec = spec

        def alive(self) -> int:
            return 1

        def running(self) -> list:
            return []

    run.removed_this_cycle = {spec.fixture}
    run.expect = dataclasses.replace(run.expect, workers_exit_within=0.05)
    monkeypatch.setattr(runner, "dump_blocked", lambda *a, **k: None)
    monkeypatch.setattr(runner, "taint", lambda: OOT)
    run.taint_start = OOT
    run._wait_workers([Stuck()])
    assert run.violations == [
        f"cycle 0: worker {spec.name}: 1 thread(s) still running 0.05 s after {spec.fixture} "
        "was removed "
        "(no error returned, or blocked)"
    ]


def test_a_consumer_not_tried_after_the_removal_names_what_was_removed():
    run = _run_of("gpio-sim-remove-under-readers")
    spec = run.sc.workers[0]

    class Idle:
        name = spec.name

        def __init__(self):
            self.spec = dataclasses.replace(spec, min_ops_after_removal=3)

        def short_files(self):
            return [], 0

        def short_after_removal(self):
            return [f"{spec.name}/0: 1"]

    run._check_work(Idle(), {"ops": spec.min_ops})
    assert run.violations == [
        f"cycle 0: worker {spec.name}: thread(s) tried fewer than 3 ops after the removal of "
        f"{spec.fixture} or what it uses ({spec.name}/0: 1): the consumers were not tried after it"
    ]


def test_a_provider_back_under_more_names_than_the_bound_ends_the_item_in_that_cycle(monkeypatch):
    """The bound was checked after the last cycle: a leak that showed in cycle 2 of 40
    made the item run all 40 (134 s) before it said so."""
    run = _run_of("gpio-sim-plug-cycle")
    names = iter(f"gpiochip{n}" for n in range(100))

    class Leaking:
        def identity(self) -> str:
            return next(names)

    run.fixtures = {"chip0": Leaking()}
    cycles = []

    def cycle() -> None:
        cycles.append(run.cycle)
        run._note_identity("chip0")

    monkeypatch.setattr(run, "setup_fixtures", lambda: run._note_identity("chip0"))
    monkeypatch.setattr(run, "teardown_fixtures", lambda: None)
    monkeypatch.setattr(run, "_close_held", lambda everything: None)
    monkeypatch.setattr(runner, "event", lambda *a, **k: None)
    monkeypatch.setattr(runner, "slab_kb", lambda: 0)
    monkeypatch.setattr(run, "run_cycle", cycle)
    error, _ = run._cycles()
    assert error is None and cycles == [0, 1, 2, 3]  # names 1..5: the fifth breaks bound 4
    (violation,) = run.violations
    assert violation.startswith("cycle 3: chip0 came back under 5 different kernel names")
    assert "gpiochip0, gpiochip1, gpiochip2, gpiochip3, gpiochip4" in violation

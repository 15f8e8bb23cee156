"""Proof of work, driven on the host through the guest's own worker and runner code.

Each test loads a shipped scenario and turns it into the plan entry the guest
gets (harness.results.Item), builds the scenario's real fixture object (its chip
model, not started: no gadget, no kernel) and runs the scenario's workers on a
file that holds what the kernel would serve, or on a pipe that carries
gpiolib-cdev's 48-byte event records. Only what stands for the kernel is
replaced; the counting and the verdicts are the guest's.
"""

import json
import os
import time
from pathlib import Path

import pytest

from guest import fixtures, gpiocdev, runner, workers
from guest.workers import gpio_edge_churn, gpio_edge_events
from guest.workers.base import Handle, ThreadState, Worker
from harness import report
from harness.results import Item, ItemResult
from harness.scenario import load_scenario
from tests.guestreport import guest_report

ROOT = Path(__file__).resolve().parents[1]


def plan_item(name: str):
    """The scenario's plan entry as the guest reads it (through JSON, like the plan file)."""
    scenario = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    entry = Item(id=name, scenario=scenario, repetition=0, seed=scenario.seed).plan_entry()
    return runner.decode_item(json.loads(json.dumps(entry)))


@pytest.fixture
def run_of(monkeypatch):
    """A ScenarioRun of a shipped scenario; its kernel-log lines are kept, not written."""
    logged: list[str] = []
    monkeypatch.setattr(runner, "kmsg", logged.append)

    def make(name: str) -> runner.ScenarioRun:
        run = runner.ScenarioRun(plan_item(name), {})
        run.deadline = time.monotonic() + 60
        for spec in run.sc.fixtures:
            if fixtures.uses_usb(spec.type):
                run.fixtures[spec.name] = fixtures.make(spec, "harness-0-0", "dummy_udc.0", {})
        return run

    return make


def workers_of(run: runner.ScenarioRun, path: Path, kind: str) -> list[Worker]:
    """The scenario's workers of ``kind``, as run_cycle makes them, reading ``path``."""
    return [
        workers.make(spec, lambda _: str(path), run.fixtures.get(spec.fixture or ""), run.item.seed)
        for spec in run.sc.workers
        if spec.type == kind
    ]


def run_to_end(ws: list[Worker], started: bool = False) -> None:
    """Start the workers (unless ``started``) and wait until each has ended by itself."""
    for w in [] if started else ws:
        w.start()
    for w in ws:
        assert not w.join(30), w.name
        w.stop()


def chip_file(tmp_path: Path, chip, keep: int | None = None) -> Path:
    """What the kernel's nvmem or mtd file serves: the chip model's content (or its start)."""
    content = chip.expected(0, chip.size())
    path = tmp_path / "chip"
    path.write_bytes(content[:keep] if keep is not None else content)
    return path


# --- whole-file reads ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nvmem-data-integrity", "mtd-data-integrity"])
def test_whole_file_reads_verify_every_byte_and_say_so(run_of, tmp_path, name):
    run = run_of(name)
    chip = next(iter(run.fixtures.values()))
    readers = workers_of(run, chip_file(tmp_path, chip), "read-file")
    run_to_end(readers)
    run._check_workers(readers, set(), {})
    assert run.violations == []
    for w in readers:
        total = run.totals[w.name]
        assert total["ops"] == w.spec.max_ops
        assert total["bytes_verified"] == w.spec.max_ops * chip.size(), w.name


def test_the_junit_output_says_the_bytes_verified_per_worker(run_of, tmp_path):
    run = run_of("nvmem-data-integrity")
    readers = workers_of(run, chip_file(tmp_path, run.fixtures["eeprom0"]), "read-file")
    run_to_end(readers)
    run._check_workers(readers, set(), {})
    scenario = load_scenario(ROOT / "scenarios" / "nvmem-data-integrity.yaml")
    item = Item("nvmem-data-integrity", scenario, 0, scenario.seed)
    result = ItemResult(item, guest=guest_report(**{"workers": run.totals, "actions": run.actions}))
    text = report._stats_text(result, "")
    assert "worker read-odd (read-file, 1 thread(s)): 2 ops" in text
    assert "16384 bytes read, 16384 verified" in text


@pytest.mark.parametrize("name", ["nvmem-data-integrity", "mtd-data-integrity"])
def test_a_premature_eof_is_no_op_and_a_violation(run_of, tmp_path, name):
    """A file that ends halfway through the chip: every byte returned is right, half are missing."""
    run = run_of(name)
    chip = next(iter(run.fixtures.values()))
    half = chip.size() // 2
    readers = workers_of(run, chip_file(tmp_path, chip, keep=half), "read-file")
    for w in readers:
        w.start()
    t0 = time.monotonic()
    run.wait_min_ops(readers)  # a short file ends the thread: no wait for ops that cannot come
    assert time.monotonic() - t0 < 10
    run_to_end(readers, started=True)
    run._check_workers(readers, set(), {})
    for w in readers:
        assert run.totals[w.name]["ops"] == 0, w.name
        assert w.alive() == 0, "on_error: stop ends a thread at its first short file"
        assert run.totals[w.name]["end_errnos"] == {"short-file": 1}
        assert any(
            f"worker {w.name}:" in v and f"(read {half} of {chip.size()} bytes" in v
            for v in run.violations
        ), run.violations
        assert any(f"worker {w.name} did 0 ops" in v for v in run.violations)


def test_a_file_cut_short_by_its_providers_removal_is_not_a_violation(run_of, tmp_path):
    """The unplug scenarios' point: a read the removal cut short is counted, not blamed.

    The same short read made after the provider came back is a violation again.
    """
    run = run_of("mtd-spi-nor-unplug-during-read")
    chip = run.fixtures["flash0"]
    path = chip_file(tmp_path, chip, keep=65536)
    cat = workers_of(run, path, "read-file")[0]
    assert cat.spec.whole_file
    began = time.monotonic()
    cat.start()
    time.sleep(0.2)
    cat.stop()
    assert not cat.join(10)
    cat.mark_removal(began)  # every read above ran while flash0 was gone
    cat.mark_restored(time.monotonic())
    tries = sum(s.failed for s in cat.states)
    run._check_workers([cat], {"flash0"}, {cat.name: [None, None]})
    assert tries == cat.spec.threads and not [
        v for v in run.violations if "whole-file" in v
    ], run.violations
    assert run.totals["cat-loop"]["files_cut_by_removal"] == tries

    later = workers_of(run, path, "read-file")[0]
    later.mark_removal(began)
    later.mark_restored(time.monotonic())
    later.start()
    time.sleep(0.2)
    later.stop()
    assert not later.join(10)
    wrong, cut = later.short_files()
    assert cut == 0 and wrong and wrong[0] == f"65536 of {chip.size()} bytes"


# --- edge events -----------------------------------------------------------------------


class PipeEdgeWaiter(gpio_edge_events.WORKER):
    """The edge waiter of gpio-sim-remove-under-readers, its line request replaced by a
    pipe that carries one 48-byte record per edge, as a read of the request fd returns."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read_end, self.write_end = os.pipe()

    def open_handle(self, lines: list[int]) -> Handle:
        return Handle(self.read_end)

    def deliver(self, count: int) -> None:
        os.write(self.write_end, bytes(gpiocdev.LINE_EVENT_SIZE * count))


def edge_waiter(run: runner.ScenarioRun) -> PipeEdgeWaiter:
    spec = next(s for s in run.sc.workers if s.type == "gpio-edge-events")
    return PipeEdgeWaiter(spec, str, None, run.item.seed)


def test_an_edge_waiter_counts_events_not_timeouts(run_of):
    waiter = edge_waiter(run_of("gpio-sim-remove-under-readers"))
    waiter.start()
    try:
        time.sleep(0.7)  # three 0.2 s waits with no edge
        assert waiter.ops == 0
        waiter.deliver(2)
        waiter.deliver(3)
        deadline = time.monotonic() + 5
        while waiter.ops < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        assert waiter.ops == 5
    finally:
        waiter.stop()
        assert not waiter.join(5)


def test_a_removal_with_no_edges_delivered_has_no_proof(run_of):
    run = run_of("gpio-sim-remove-under-readers")
    waiter = edge_waiter(run)
    assert waiter.spec.min_ops >= 1
    waiter.start()
    try:
        proof = run._midread([waiter], "chip0")
        assert proof["edge-waiter"]["ops"] == 0
        assert any("edge-waiter had read 0 edge events" in v for v in run.violations)

        run.violations.clear()
        waiter.deliver(waiter.spec.min_ops)
        proof = run._midread([waiter], "chip0")
        assert proof["edge-waiter"]["ops"] == waiter.spec.min_ops
        assert run.violations == []
    finally:
        waiter.stop()
        assert not waiter.join(5)


def test_edge_churn_releases_every_request_and_debounces_every_other(run_of, monkeypatch):
    """gpio-edge-churn: each op a request for both edges, closed with its chip fd; odd ops
    carry a debounce attribute (so gpiolib's debounce work runs), even ops none."""
    run = run_of("gpio-sim-edge-consumers-churn")
    spec = next(s for s in run.sc.workers if s.type == "gpio-edge-churn")
    worker = gpio_edge_churn.WORKER(spec, str, None, run.item.seed)
    monkeypatch.setattr(worker, "_chip_path", lambda: os.devnull)
    asked, line_fds = [], []

    def ioctl(fd: int, request: int, req) -> None:
        assert request == gpiocdev.GET_LINE
        attr = req.config.attrs[0]
        asked.append((req.config.flags, req.config.num_attrs, attr.attr.id, attr.attr.value))
        req.fd, write_end = os.pipe()
        os.close(write_end)  # no event: the op waits its 20 ms and releases
        line_fds.append(req.fd)

    monkeypatch.setattr(gpiocdev.fcntl, "ioctl", ioctl)
    state = ThreadState()
    for _ in range(2):
        state.ops += worker.op(None, [0], bytearray(), state)
    edges = gpiocdev.FLAG_INPUT | gpiocdev.FLAG_EDGE_RISING | gpiocdev.FLAG_EDGE_FALLING
    assert asked == [
        (edges, 0, 0, 0),
        (edges, 1, gpiocdev.ATTR_ID_DEBOUNCE, gpio_edge_churn.DEBOUNCE_US),
    ]
    for fd in line_fds:
        with pytest.raises(OSError):
            os.fstat(fd)  # released


# --- the wp-gpio scenario: writers of an EEPROM whose wp GPIO chip is removed ----------


def test_wp_gpio_removal_proves_the_writers_worked_before_and_after_it(run_of, tmp_path):
    """Its midread names the writers (they use chip0 through eeprom0's wp line), and the
    summary says per thread what they did after the removal.

    The EEPROM here is a file that the chip model reads back from (no at24, no emulator):
    the writers' own read-back is what they check.
    """
    run = run_of("nvmem-wp-gpio-removed-under-writers")
    eeprom = run.fixtures["eeprom0"]
    path = chip_file(tmp_path, eeprom)
    eeprom.expected = lambda offset, length: path.read_bytes()[offset : offset + length]
    writers = workers_of(run, path, "write-read-back")
    assert run._targets(writers, "chip0") == writers
    for w in writers:
        w.start()
    try:
        proof = run._midread(writers, "chip0")
        assert proof["writers"]["ops_in_window"] > 0 and proof["writers"]["alive_threads"] == 2
        for w in writers:
            w.mark_removal(time.monotonic())
        deadline = time.monotonic() + 10
        while writers[0].short_after_removal() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        for w in writers:
            w.stop()
            assert not w.join(5)
    ended = {w.name: [s.end_errno for s in w.states] for w in writers}
    run._check_workers(writers, {"chip0"}, ended)
    assert run.violations == []
    after = run.totals["writers"]["after_removal"]
    assert len(after) == 2
    assert all(t["ops"] >= 3 and t["failed"] == 0 for t in after), after
    assert run.totals["writers"]["bytes_verified"] == 64 * run.totals["writers"]["ops"]
    scenario = load_scenario(ROOT / "scenarios" / "nvmem-wp-gpio-removed-under-writers.yaml")
    item = Item(scenario.name, scenario, 0, scenario.seed)
    text = report._stats_text(ItemResult(item, guest=guest_report(**{"workers": run.totals})), "")
    assert f"after the removal per thread: {after[0]['ops']} ok/0 failed, " in text


def test_a_threads_ops_after_removal_are_summed_over_cycles(run_of, tmp_path):
    run = run_of("nvmem-wp-gpio-removed-under-writers")
    for cycle in range(2):
        writers = workers_of(run, tmp_path / "absent", "write-read-back")
        for w in writers:
            for _ in range(w.spec.threads):
                state = ThreadState()
                state.ops = 10
                w.states.append(state)
            w.mark_removal(time.monotonic())
            w.states[0].ops += 4 + cycle
            w.states[1].failed += 3
        run.cycle = cycle
        run._check_workers(writers, {"chip0"}, {})
    assert run.totals["writers"]["after_removal"] == [
        {"ops": 9, "failed": 0},
        {"ops": 0, "failed": 6},
    ]

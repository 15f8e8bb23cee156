"""Splat parser against real console logs of the harness kernel (tests/data/logs).

Each log was produced by tests/corpus/collect.py (LKDTM or guest/modules/splat_selftest on
6.12 under QEMU) or is a real harness run; expected.json holds the reviewed
kind and title of every splat in each log, so a pattern change that alters
any title or misses any report fails here. The directories beside them
(6.1/, 7.3/) hold the same cases collected on the other kernels of the
matrix, whose report formats differ: the same bug must get the same title
there, or series and bisection could not compare runs across kernels.
"""

import json
from pathlib import Path

import pytest

from harness import splats

LOGS = Path(__file__).parent / "data" / "logs"
DEFAULT = "6.12"
KERNELS = {DEFAULT: LOGS, **{p.name: p for p in sorted(LOGS.iterdir()) if p.is_dir()}}
EXPECTED_BY_KERNEL = {k: json.loads((d / "expected.json").read_text()) for k, d in KERNELS.items()}
EXPECTED = EXPECTED_BY_KERNEL[DEFAULT]
CASES = [(k, name) for k in KERNELS for name in sorted(EXPECTED_BY_KERNEL[k])]


def _parse(kernel: str, name: str) -> list[splats.Splat]:
    return splats.parse((KERNELS[kernel] / name).read_text(errors="replace"))


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_every_log_has_an_expectation(kernel):
    logs = sorted(p.name for p in KERNELS[kernel].glob("*.log"))
    assert logs == sorted(EXPECTED_BY_KERNEL[kernel])


@pytest.mark.parametrize(("kernel", "name"), CASES)
def test_titles(kernel, name):
    got = [{"kind": s.kind, "title": s.title, "scenario": s.scenario} for s in _parse(kernel, name)]
    assert got == EXPECTED_BY_KERNEL[kernel][name]


OTHER_CASES = [(k, n) for k, n in CASES if k != DEFAULT and n in EXPECTED]
# Where a kernel's own code, not its report format, makes a case differ: the title's
# function follows the trace, and a detector the tree does not arm reports nothing.
KERNEL_DIFFERS = {
    # 6.1's lkdtm calls its handlers from direct_entry(), which inlines these two
    ("6.1", "lkdtm-hung_task.log"): "INFO: task hung in direct_entry",
    ("6.1", "lkdtm-slab_free_double.log"): "KASAN: double-free in direct_entry",
    # 6.1 builds without -fstrict-flex-arrays: UBSAN takes lkdtm's trailing data[8] for a
    # flexible array and does not check it (lkdtm: "FAIL: survived array bounds overflow!")
    ("6.1", "lkdtm-array_bounds.log"): None,
}


@pytest.mark.parametrize(("kernel", "name"), OTHER_CASES)
def test_one_bug_one_title_on_every_kernel(kernel, name):
    """The report a case provokes is titled as on the default kernel: each kernel's first
    report is among the other's. What follows it (a lockup after a deadlock) may differ
    with the kernel's own reaction, and two detectors racing (the soft lockup and the RCU
    stall of one busy loop) may come in either order."""
    mine = [(s.kind, s.title) for s in _parse(kernel, name)]
    default = [(s.kind, s.title) for s in _parse(DEFAULT, name)]
    if (kernel, name) in KERNEL_DIFFERS:
        title = KERNEL_DIFFERS[kernel, name]
        assert [t for _, t in mine[:1]] == ([title] if title else [])
        if title:  # the same bug type, met in the function the kernel's trace names
            assert (mine[0][0], title.partition(" in ")[0]) == (
                default[0][0],
                default[0][1].partition(" in ")[0],
            )
        return
    assert mine[0] in default and default[0] in mine


@pytest.mark.parametrize(("kernel", "name"), CASES)
def test_excerpt_holds_the_report(kernel, name):
    for splat in _parse(kernel, name):
        lines = splat.excerpt.splitlines()
        assert 3 <= len(lines) <= splats._MAX_LINES + 1  # the KASAN banner above its header
        assert "harness-event" not in splat.excerpt
        function = splat.title.rsplit(" in ", 1)[-1]
        if " in " in splat.title and function != "unknown":
            assert function in splat.excerpt


def test_boot_log_without_splats_is_clean():
    text = (LOGS / "clean-boot.log").read_text()
    assert splats.parse(text) == []


def test_timestamps_and_caller_ids_are_stripped():
    (line,) = splats.split_lines("[   12.345678][  T123] BUG: KASAN: double-free in foo+0x1/0x2")
    assert line.time == 12.345678 and line.text.startswith("BUG: KASAN")


def test_same_title_twice_in_one_scenario_is_counted_once():
    text = (LOGS / "lkdtm-warning.log").read_text()
    start = text.index("------------[ cut here ]")
    end = text.index("---[ end trace", start)
    block = text[start : text.index("\n", end) + 1]
    found = splats.parse(text + block)
    assert len(found) == 1 and found[0].count == 2


def test_splat_is_attributed_to_the_scenario_between_markers():
    text = (LOGS / "harness-selftest-kasan.log").read_text()
    (splat,) = splats.parse(text)
    assert splat.scenario == "selftest-kasan"
    spans = splats.scenario_spans(text)
    start, end = spans["selftest-kasan"]
    assert start < splat.first_line < end
    # the same report with the end marker moved above it is outside any scenario
    lines = text.splitlines()
    end_marker = lines.pop(end - 1)
    lines.insert(start, end_marker)
    (outside,) = splats.parse("\n".join(lines))
    assert outside.scenario is None


def test_a_blocked_tasks_dump_is_titled_where_the_stuck_task_sleeps():
    """guest/runner.py's note names the stuck thread; without it the first blocked task counts,
    and a dump with no blocked task is no report."""
    text = (LOGS / "harness-revocable-shared-fd-hang.log").read_text(errors="replace")
    (hang,) = splats.parse(text)
    assert hang.title == "INFO: task hung in revocable_provider_revoke"
    assert hang.excerpt.splitlines()[0].startswith("harness: remove rev0 did not return")
    lines = text.splitlines(keepends=True)
    bare = "".join(line for line in lines if "stacks of blocked tasks follow" not in line)
    assert [s.title for s in splats.parse(bare)] == [hang.title]
    start = text.index("task:init.py")
    empty = text[:start] + text[text.index("</TASK>", start) + len("</TASK>") :]
    assert splats.parse(empty) == []


def test_a_consumer_waiting_interruptibly_is_named_by_its_own_stack():
    """A reader that never returns sleeps in state S in the driver's wait (mutant 18, the CP2112
    waiting without a timeout), which sysrq w does not show: the runner's harness-stack lines
    name it, and the dump is titled by that wait, not by the kernfs lock its sibling waits on."""
    text = (LOGS / "harness-cp2112-wait-interruptible.log").read_text(errors="replace")
    found = splats.parse(text)
    (wait,) = [s for s in found if s.title == "INFO: task hung in cp2112_wait"]
    assert wait.excerpt.splitlines()[0].startswith("harness: worker threads blocked")
    assert wait.kind == "hung-task"  # the unbind that never returned is the kernel side's proof
    alone = text[text.index("harness: worker threads blocked") :]
    alone = alone[: alone.index("harness: scenario-end")]
    assert [(s.kind, s.title) for s in splats.parse(alone)] == [
        ("timeout", "timeout: tasks blocked in cp2112_wait")
    ]


def test_the_hosts_dump_after_the_runner_went_quiet_is_the_same_hang():
    """Hung-task reports, the runner's deadline dump and the host's sysrq dump: one bug."""
    text = (LOGS / "harness-gpio-sim-removal-never-returns.log").read_text(errors="replace")
    (hang,) = splats.parse(text)
    assert hang.title == "INFO: task hung in gpio_sim_device_deactivate"
    assert hang.count == 6  # 4 from khungtaskd, the runner's dump, the host's


def test_a_dump_the_harness_asked_for_is_a_timeout_unless_the_kernel_saw_a_hang():
    """The runner's deadline dump and the host's sysrq dump, without a report of the kernel's
    own hung-task detector in that scenario and without a call named as never returning: a
    slow machine or a stuck user-space emulator leaves tasks blocked too, so they are a
    timeout of the scenario, not a kernel hang (and not titled as one)."""
    text = (LOGS / "harness-gpio-sim-removal-never-returns.log").read_text(errors="replace")
    host = text[text.index("harness-host: ") :]
    (dump,) = splats.parse(host)
    assert (dump.kind, dump.title) == (
        "timeout",
        "timeout: tasks blocked in gpio_sim_device_deactivate",
    )
    lines = text.splitlines(keepends=True)
    no_detector = "".join(x for x in lines if "blocked for more than" not in x)
    assert [s.kind for s in splats.parse(no_detector)] == ["timeout"]
    # a note naming the thread whose call never returned is the kernel's hang, detector or not
    named = (LOGS / "harness-revocable-shared-fd-hang.log").read_text(errors="replace")
    named = "".join(x for x in named.splitlines(keepends=True) if "blocked for more than" not in x)
    assert [s.kind for s in splats.parse(named)] == ["hung-task"]


@pytest.mark.parametrize("kernel", ["6.1", "7.3"])
def test_one_freed_object_is_one_bug_across_kernels(kernel):
    """The spi-nor device freed under a reader, on each kernel: the object's allocation and
    free sites match once each kernel's own machinery is skipped (6.1's ____kasan_slab_free,
    7.3's device_unbind_cleanup), so series and bisect compare runs across kernels."""
    name = "harness-mtd-unbind-spi-device.log"
    mine, default = _parse(kernel, name)[0], _parse(DEFAULT, name)[0]
    assert splats.kasan_object(mine) == ("spi_nor_probe", "device_release_driver_internal")
    assert splats.kasan_object(mine) == splats.kasan_object(default)
    assert splats.same_bug(mine, default)


def _titles(kernel: str, name: str) -> list[str]:
    return [s.title for s in _parse(kernel, name)]


@pytest.mark.parametrize(
    ("kernel", "name", "title"),
    [
        # a reader spinning in rcu_read_lock() while another CPU waits in
        # synchronize_rcu_expedited(): titled like any RCU stall of that reader
        (DEFAULT, "module-rcu-exp-stall.log", "INFO: rcu detected stall in selftest_spinner"),
        ("7.3", "module-rcu-exp-stall.log", "INFO: rcu detected stall in selftest_spinner"),
        # a task that never switches voluntarily while synchronize_rcu_tasks() waits
        ("7.3", "module-rcu-tasks-stall.log", "INFO: rcu_tasks detected stall in selftest_spinner"),
        # a preemptible kernel's form (rcu_preempt), from a public report: a kworker caught
        # in cond_resched between work items, titled by the work function it was running
        (
            "public",
            "lkrg-189-rcu_preempt-expedited.log",
            "INFO: rcu detected stall in p_check_integrity",
        ),
    ],
)
def test_rcu_stalls_that_do_not_taint_are_reports(kernel, name, title):
    """Neither stall taints the kernel, so the parser is their only detector."""
    text = (KERNELS[kernel] / name).read_text(errors="replace")
    assert "detected expedited stalls" in text or "rcu_tasks detected stalls" in text
    assert [(s.kind, s.title) for s in _parse(kernel, name)][:1] == [("rcu-stall", title)]


def test_two_drivers_sleeping_in_atomic_context_are_two_titles():
    """Each takes a mutex in atomic context: the title names the function, not __mutex_lock."""
    a = _titles(DEFAULT, "module-mutex-atomic-a.log")
    b = _titles(DEFAULT, "module-mutex-atomic-b.log")
    prefix = "BUG: sleeping function called from invalid context in "
    assert a == [prefix + "selftest_mutex_in_atomic_a"]
    assert b == [prefix + "selftest_mutex_in_atomic_b"]


def test_scheduling_while_atomic_in_a_mutex_names_the_caller():
    """The mutex is held elsewhere, so mutex_lock() under a spinlock really sleeps: both
    reports come from __mutex_lock and name the function that took the lock."""
    titles = _titles(DEFAULT, "module-mutex-atomic-contended.log")
    where = " in selftest_mutex_contended_in_atomic"
    assert titles[:2] == [
        "BUG: sleeping function called from invalid context" + where,
        "BUG: scheduling while atomic" + where,
    ]


@pytest.mark.parametrize("kernel", [DEFAULT, "7.3"])
def test_a_freed_structs_mutex_is_titled_by_its_user(kernel):
    """The driver's priv, freed on unbind, locked afterwards: the access is in lockdep or the
    mutex code below the driver's function, and the title names the driver's function."""
    (uaf,) = _parse(kernel, "module-devm-priv.log")
    assert uaf.title == "KASAN: slab-use-after-free Read in selftest_devm_priv_read"
    lockers = {"__mutex_lock", "mutex_lock_nested", "lock_acquire", "__lock_acquire"}
    assert lockers & set(uaf.frames[: uaf.frames.index("selftest_devm_priv_read")])


def test_bad_page_state_title_drops_process_and_pfn():
    (bad,) = _parse(DEFAULT, "module-bad-page.log")
    assert "pfn:" in bad.excerpt and "in process" in bad.excerpt
    assert (bad.kind, bad.title) == ("bad-page", "BUG: Bad page state in selftest_free_mapped_page")


@pytest.mark.parametrize("kernel", [DEFAULT, "6.1"])
def test_kmemleak_title_names_the_allocating_code(kernel):
    """The console report (kmemleak.verbose=1) and the debugfs file's: one title, the
    function that called the allocator (6.1 prints its addresses as "(____ptrval____)")."""
    (leak,) = _parse(kernel, "module-leak.log")
    assert (leak.kind, leak.title) == ("kmemleak", "memory leak in selftest_leak")
    assert leak.count == 2


@pytest.mark.parametrize("kernel", [DEFAULT, "6.1"])
def test_list_corruption_reported_as_a_bug_is_one_report(kernel):
    """CONFIG_BUG_ON_DATA_CORRUPTION: the message comes before the BUG(), not inside a WARN."""
    text = (KERNELS[kernel] / "lkdtm-corrupt_list_del-bug.log").read_text(errors="replace")
    assert "kernel BUG at" in text and "list_del corruption" in text
    (bug,) = _parse(kernel, "lkdtm-corrupt_list_del-bug.log")
    assert bug.title == "BUG: corrupted list in lkdtm_CORRUPT_LIST_DEL"
    assert bug.excerpt.startswith("list_del corruption")

"""guest/blocked.py: which tasks an item left stuck in the kernel, from real /proc texts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from guest import blocked

PROC = Path(__file__).parent / "data" / "proc"


def test_stat_keeps_a_comm_with_spaces_and_parentheses():
    assert blocked.parse_stat((PROC / "vfork-parent.stat").read_text()) == ("kworker/0:1 (x)", "D")
    assert blocked.parse_stat((PROC / "sleeping.stat").read_text()) == ("bash", "S")


def test_switches_add_voluntary_and_involuntary():
    assert blocked.parse_switches((PROC / "vfork-parent.status").read_text()) == 33 + 4


def _proc(root: Path, tasks: dict[int, str]) -> Path:
    for tid, sample in tasks.items():
        task = root / str(tid) / "task" / str(tid)
        task.mkdir(parents=True)
        for part in ("stat", "status", "stack"):
            if (PROC / f"{sample}.{part}").exists():
                shutil.copy(PROC / f"{sample}.{part}", task / part)
                shutil.copy(PROC / f"{sample}.{part}", root / str(tid) / part)
    return root


def test_blocked_now_lists_only_state_d(tmp_path):
    proc = _proc(tmp_path, {934: "vfork-parent", 17227: "sleeping"})
    assert blocked.blocked_now(proc) == {934: blocked.Task(934, "kworker/0:1 (x)", 37)}


def test_window_follows_the_sysctls_and_defaults_without_the_detector(tmp_path):
    (tmp_path / "hung_task_timeout_secs").write_text("20\n")
    (tmp_path / "hung_task_check_interval_secs").write_text("0\n")
    assert blocked.hung_window(tmp_path) == (20.0, 45.0)
    (tmp_path / "hung_task_check_interval_secs").write_text("5\n")
    assert blocked.hung_window(tmp_path) == (20.0, 30.0)
    assert blocked.hung_window(tmp_path / "absent") == (20.0, 45.0)


class Kernel:
    """A sequence of blocked-task snapshots and detector counts, one per poll."""

    def __init__(self, snapshots: list[dict[int, blocked.Task]], counts: list[float | None]):
        self.snapshots, self.counts = snapshots, counts

    def blocked(self) -> dict[int, blocked.Task]:
        return self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]

    def reports(self) -> float | None:
        return self.counts.pop(0) if len(self.counts) > 1 else self.counts[0]


@pytest.fixture(autouse=True)
def _no_sleep(monkeypatch):
    monkeypatch.setattr(blocked, "POLL_INTERVAL", 0.0)


def test_nothing_blocked_returns_at_once():
    settled = blocked.settle(45.0, Kernel([{}], [0]).blocked, lambda: 0)
    assert settled.stuck == [] and not settled.reported


def test_a_task_that_switches_or_wakes_is_not_stuck():
    worker = blocked.Task(7, "kworker/0:2", 10)
    hub = blocked.Task(9, "kworker/1:0", 3)
    kernel = Kernel([{7: worker, 9: hub}, {7: blocked.Task(7, "kworker/0:2", 11), 9: hub}, {}], [0])
    assert blocked.settle(45.0, kernel.blocked, kernel.reports).stuck == []


def test_a_task_without_a_switch_is_stuck_until_the_bound():
    worker = blocked.Task(7, "kworker/0:2", 10)
    settled = blocked.settle(0.05, Kernel([{7: worker}], [None]).blocked, lambda: None)
    assert settled.stuck == [worker] and settled.waited >= 0.05 and not settled.reported


def test_the_detectors_report_ends_the_wait():
    worker = blocked.Task(7, "kworker/0:2", 10)
    kernel = Kernel([{7: worker}], [3, 3, 4])
    settled = blocked.settle(3600.0, kernel.blocked, kernel.reports)
    assert settled.stuck == [worker] and settled.reported


def test_a_threads_kernel_stack_in_any_state(tmp_path):
    """A wait in state S never shows in sysrq w: the runner reads the thread's own stack."""
    proc = _proc(tmp_path, {17227: "sleeping"})
    state, frames = blocked.kernel_stack(17227, proc)
    assert state == "S" and frames[0] == "[<0>] do_wait+0x53/0x120" and len(frames) == 5
    assert blocked.kernel_stack(4242, proc) == ("?", [])  # it ended meanwhile

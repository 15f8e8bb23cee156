"""Tasks an item left blocked in the kernel: a hang its teardown caused must not pass
unnoticed into the next item, whose fixtures would fail to come up on a wedged kernel.

"Stuck" is the hung-task detector's own criterion (kernel/hung_task.c): in
uninterruptible sleep (state D) without a single context switch since first seen. A
task sleeping in a loop (msleep, a polling kworker) switches, so it is not stuck.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
# The detector reports a task at its first check after hung_task_timeout_secs without a
# switch; checks come every hung_task_check_interval_secs (0: the timeout itself).
HUNG_TASK = PROC / "sys/kernel"
DEFAULT_HUNG_TIMEOUT = 20.0  # the kernel's CONFIG_DEFAULT_HUNG_TASK_TIMEOUT, harness/boot.py
REPORT_MARGIN = 5.0
POLL_INTERVAL = 0.1


@dataclass(frozen=True)
class Task:
    tid: int
    comm: str
    switches: int


@dataclass(frozen=True)
class Settled:
    """What a wait for blocked tasks found: ``stuck`` still blocked after ``waited`` s."""

    stuck: list[Task]
    waited: float
    reported: bool  # the kernel's hung-task detector spoke while we waited


def parse_stat(text: str) -> tuple[str, str]:
    """(comm, state letter) from /proc/TID/stat; comm may hold spaces and parentheses."""
    head, _, tail = text.rpartition(")")
    return head.partition("(")[2], tail.split()[0]


def parse_switches(status: str) -> int:
    """Voluntary plus involuntary context switches from /proc/TID/status."""
    total = 0
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
            total += int(value)
    return total


def blocked_now(proc: Path = PROC) -> dict[int, Task]:
    """Every task (thread) in state D, with its switch count."""
    found = {}
    for task_dir in proc.glob("[0-9]*/task/[0-9]*"):
        try:
            comm, state = parse_stat((task_dir / "stat").read_text())
            if state != "D":
                continue
            switches = parse_switches((task_dir / "status").read_text())
        except (OSError, IndexError, ValueError):  # it exited between the reads
            continue
        found[int(task_dir.name)] = Task(int(task_dir.name), comm, switches)
    return found


def _number(path: Path) -> float | None:
    try:
        return float(path.read_text())
    except (OSError, ValueError):  # a kernel without the detector, or without this counter
        return None


def hung_window(sysctl: Path = HUNG_TASK) -> tuple[float, float]:
    """(stuck for this long is a hang, by this long the detector has reported it)."""
    timeout = _number(sysctl / "hung_task_timeout_secs") or DEFAULT_HUNG_TIMEOUT
    interval = _number(sysctl / "hung_task_check_interval_secs") or timeout
    return timeout, timeout + interval + REPORT_MARGIN


def detect_count(sysctl: Path = HUNG_TASK) -> float | None:
    """How many hangs the detector has reported in this boot, where the tree counts them."""
    return _number(sysctl / "hung_task_detect_count")


def settle(
    bound: float,
    blocked: Callable[[], dict[int, Task]] = blocked_now,
    reports: Callable[[], float | None] = detect_count,
) -> Settled:
    """Wait until every task blocked now has switched or left state D, at most ``bound`` s.

    Ends early once the detector has reported (where the tree counts its reports):
    the stuck task then has its kernel-titled report inside the item.
    """
    started = time.monotonic()
    stuck = blocked()
    reports_before = reports()
    while stuck:
        waited = time.monotonic() - started
        count = reports()
        reported = count is not None and reports_before is not None and count > reports_before
        if waited >= bound or reported:
            return Settled(sorted(stuck.values(), key=lambda t: t.tid), waited, reported)
        time.sleep(POLL_INTERVAL)
        now = blocked()
        stuck = {
            tid: task
            for tid, task in stuck.items()
            if tid in now and now[tid].switches == task.switches
        }
    return Settled([], time.monotonic() - started, False)


def kernel_stack(tid: int, proc: Path = PROC) -> tuple[str, list[str]]:
    """(state letter, frames) of a task from /proc: a task in an interruptible wait (state
    S) that never returns is stuck as surely as one in D, and sysrq w shows only D."""
    try:
        _, state = parse_stat((proc / str(tid) / "stat").read_text())
        frames = (proc / str(tid) / "stack").read_text().splitlines()
    except (OSError, IndexError):  # it ended meanwhile, or no CONFIG_STACKTRACE
        return "?", []
    return state, frames

"""What one boot's guest events say, as a fold with no I/O and no clock of its own.

The runner feeds each ``harness-event`` the guest printed (ready, start, cycle,
violation, end, needs-reboot, done) with the time it arrived; the fold keeps
which item runs, which ended and how long each took, how long the host waits
before it gives up on the boot, and why the boot ended early. ``conclude``
then says what the end of the boot means for the items that got no result.
Fast tests drive both with event lists recorded from real boots.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

AFTER_END = 60.0  # after an item's end, how long the next one may take to start
AFTER_DONE = 30.0  # after 'done' or 'needs-reboot', how long the guest may take to power off


@dataclass
class Progress:
    """One boot, as far as its events have told."""

    index: int  # the boot's number in the run
    started: float  # monotonic time QEMU started
    deadline: float  # when the host gives up on the boot, as of the last event
    run_deadline: float  # the whole run's end, which no boot outlives
    timeouts: Mapping[str, float]  # item id -> its scenario's timeout, for this boot's items
    ready_at: float | None = None  # seconds from QEMU's start to the runner's 'ready'
    kernel: str = ""  # the kernel release the runner reported
    current: str | None = None  # the item running now
    current_started: float = 0.0
    ended: dict[str, float] = field(default_factory=dict)  # item id -> seconds it ran
    left_because: str = ""  # why items were left for another boot
    ended_by: str = ""  # the item that ended the boot

    def take(self, kind: str, fields: Mapping, now: float) -> str | None:
        """Fold one event in; the progress line to print, if any."""
        if kind == "ready":
            self.ready_at = now - self.started
            self.kernel = str(fields.get("kernel"))
            return (
                f"boot {self.index}: guest ready after {self.ready_at:.1f} s (kernel {self.kernel})"
            )
        if kind == "start":
            item = fields.get("id")
            self.current = item if item in self.timeouts else None
            self.current_started = now
            if self.current is None:
                return None
            self.deadline = min(self.run_deadline, now + self.timeouts[self.current])
            return f"  {self.current}: started ({fields.get('cycles')} cycle(s))"
        if self.current is not None and kind in ("cycle", "violation", "end"):
            return self._item_event(kind, fields, now)
        if kind in ("needs-reboot", "done"):
            self.deadline = min(self.deadline, now + AFTER_DONE)
            if kind == "needs-reboot":
                self.ended_by = str(fields.get("id"))
                self.left_because = (
                    f"{fields['why']} in boot {self.index}"
                    if fields.get("why")
                    else f"{fields.get('id')} left the kernel tainted or a thread stuck "
                    f"in boot {self.index}"
                )
        return None

    def _item_event(self, kind: str, fields: Mapping, now: float) -> str | None:
        if kind == "cycle":
            return (
                f"  {self.current}: cycle {fields.get('cycle')} done, "
                f"{fields.get('violations')} violation(s) so far"
            )
        if kind == "violation":
            return f"  {self.current}: {fields.get('text')}"
        self.ended[self.current] = round(now - self.current_started, 1)
        self.current = None
        self.deadline = min(self.run_deadline, now + AFTER_END)
        return None

    def pause(self, seconds: float) -> None:
        """The boot stood still for ``seconds`` (a developer's shell): every clock moves on."""
        self.deadline += seconds
        self.run_deadline += seconds
        self.current_started += seconds

    def deadline_now(self, guest: GuestSignals, kvm_silence: float | None, grace: float) -> float:
        """When to stop waiting, given what the console showed so far.

        ``kvm_silence``: under KVM, how long the kernel may stay silent before
        KVM counts as broken (None under TCG). A fatal report inside an item
        leaves the runner ``grace`` seconds to say so before the boot is given up.
        """
        if kvm_silence is not None and not guest.kernel_output:
            return min(self.deadline, self.started + kvm_silence)
        if guest.kvm_failure:
            return 0.0
        if self.current is not None and guest.fatal_at > self.current_started:
            return min(self.deadline, guest.fatal_at + grace)
        return self.deadline


@dataclass(frozen=True)
class GuestSignals:
    """What the host saw on the console besides events (boot.Guest's fields)."""

    kernel_output: bool = False
    kvm_failure: str = ""
    fatal_at: float = 0.0


@dataclass
class Conclusion:
    """What the end of a boot means for its items: those with a final result now, and
    the errors or violations of the ones the boot left without one."""

    done: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)
    violations: dict[str, str] = field(default_factory=dict)


def conclude(
    progress: Progress,
    ended: str,
    pending: list[str],
    reported: Collection[str],
    tail: str,
    console: str,
) -> Conclusion:
    """The boot ended (``ended``: exit or timeout) with these events folded in.

    ``reported``: the items a kernel report was attributed to (for the item the
    boot ended in, the report is its verdict: the runner could not say more).
    """
    found = Conclusion(done=set(progress.ended))
    current = progress.current
    if current is not None:
        if current in reported:
            found.violations[current] = (
                f"the guest runner stopped reporting after the kernel's report ({ended}); "
                f"console: {console}"
            )
        elif ended == "timeout":
            found.errors[current] = (
                f"timeout: no result within {progress.timeouts[current]:g} s "
                f"(guest hung?); console tail:\n{tail}"
            )
        else:
            found.errors[current] = f"the guest died during the scenario; console tail:\n{tail}"
        progress.left_because = f"{current} ended boot {progress.index} ({ended})"
        progress.ended_by = current
        found.done.add(current)
    elif progress.ready_at is None:
        why = f"the kernel did not reach the guest runner ({ended})"
        _none_ran(found, pending, reported, why, tail, console)
    if not found.done and progress.ready_at is not None:
        # the runner came up but finished nothing: do not loop forever
        _none_ran(
            found,
            pending,
            reported,
            f"guest ended ({ended}) before running anything",
            tail,
            console,
        )
    return found


def _none_ran(
    found: Conclusion,
    pending: list[str],
    reported: Collection[str],
    why: str,
    tail: str,
    console: str,
) -> None:
    """A boot that ran none of its items: one a kernel report was attributed to (its kernel
    was broken before it started) fails with it; the rest have no verdict."""
    for item in pending:
        if item in reported:
            found.violations[item] = (
                f"the kernel reported a bug before the item started; {why}; console: {console}"
            )
        else:
            found.errors[item] = f"{why}; console tail:\n{tail}"
    found.done.update(pending)

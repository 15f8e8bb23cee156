"""Run scenario items in as few boots as possible and turn the outcome into verdicts.

Items that share a kernel command line run in one boot. A scenario that hangs,
crashes the guest or taints the kernel ends that boot; the remaining items get
a fresh one. Splats are read from each boot's console log and attributed to
the scenario whose kmsg markers surround them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from guest import protocol
from harness import accel as accel_mod
from harness import splats, symbols
from harness.accel import Accel
from harness.boot import BootError, BootSpec, Guest
from harness.bootfold import GuestSignals, Progress, conclude
from harness.progress import say
from harness.results import BootRecord, Item, ItemResult, decide, kernel_reports
from harness.splats import Splat

BOOT_TIMEOUT = {"kvm": 120.0, "tcg": 300.0}
# After a KASAN report or an Oops inside a scenario, how long the guest runner may
# take to report before the boot is given up (it normally needs a few seconds).
FATAL_GRACE = {"kvm": 30.0, "tcg": 90.0}
CONSOLE_TAIL = 60


def _tail(path: Path, lines: int = CONSOLE_TAIL) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def attribute(log: str, ids: Sequence[str]) -> tuple[dict[str, list[Splat]], list[Splat]]:
    """A boot's splats per item id (``ids``: the boot's items in the order it was to run
    them), and those no item can take (only in a boot that had none)."""
    spans = splats.scenario_spans(log)
    owned: dict[str, list[Splat]] = {}
    outside: list[Splat] = []
    for splat in splats.parse(log):
        owner = (splat.scenario or "").split(" ")[0]
        if owner not in ids:
            found, splat.outside = outside_owner(splat.first_line, spans, ids[0] if ids else None)
            owner = found or ""
        if owner in ids:
            owned.setdefault(owner, []).append(splat)
        else:
            outside.append(splat)
    return owned, outside


def outside_owner(
    line: int, spans: dict[str, tuple[int, int | None]], first: str | None = None
) -> tuple[str | None, str]:
    """The item a splat outside every scenario's markers counts against, and where it fell.

    A report after an item's end marker is most often that item's late work
    (a deferred free, a work item, a release on the last close), and one before
    the boot's first item (``first``: the first it was to run, when none
    started) means the kernel that item ran on was already broken: either way
    the kernel bug fails an item, so the run, a series and a bisection all
    count it.
    """
    started = sorted((start, name) for name, (start, _end) in spans.items())
    before = [name for start, name in started if start < line]
    if before:
        return before[-1], f"after {before[-1]} ended"
    first = started[0][1] if started else first
    if first is not None:
        return first, f"during boot, before {first} started"
    return None, "during boot, before any item"


class Runner:
    """Runs items in as few boots as possible: ``boot_by_boot()`` yields after every boot, so a
    caller that has seen enough (a bisection step that reproduced) stops by leaving
    the loop; ``run()`` runs them all."""

    def __init__(
        self,
        kernel_image: Path,
        accel: Accel,
        out_dir: Path,
        run_deadline: float,
        modules: dict[str, str] | None = None,
        shell: str = "",
        objects: symbols.Objects | None = None,
    ):
        self.kernel_image = kernel_image
        self.shell = shell  # protocol.Plan.shell: the developer gets the guest's console
        self.objects = objects  # vmlinux and modules with line tables: excerpts get file:line
        self.modules = modules or {}  # helper kernel modules the guest may insmod
        self.accel = accel
        self.out = out_dir
        self.run_deadline = run_deadline
        self.boots: list[BootRecord] = []
        self.guest: Guest | None = None
        self.results: dict[str, ItemResult] = {}
        self.current: Item | None = None  # the item running right now, if any
        self.finished: set[str] = set()  # items with a verdict (a hang's splats are one)
        self.announced: dict[str, str] = {}  # item id -> the verdict line printed as it ended

    def partial(self, items: list[Item], why: str) -> list[ItemResult]:
        """Results so far; items without an outcome get ``why`` as their error."""
        out = []
        for item in items:
            result = self.results.setdefault(item.id, ItemResult(item))
            if item.id not in self.finished and result.guest is None and result.error is None:
                running = self.current is not None and self.current.id == item.id
                result.error = f"{why} while running" if running else f"not run ({why})"
                decide(result)
            out.append(result)
        return out

    def run(self, items: list[Item]) -> list[ItemResult]:
        for _ in self.boot_by_boot(items):
            pass
        return [self.results[item.id] for item in items]

    def boot_by_boot(self, items: list[Item]) -> Iterator[list[ItemResult]]:
        """Boot after boot (items that share a command line share boots), the results
        that have a verdict so far, in the items' order."""
        self.results.update({item.id: ItemResult(item) for item in items})
        groups: dict[tuple[str, ...], list[Item]] = {}
        for item in items:
            groups.setdefault(item.scenario.cmdline, []).append(item)
        try:
            for cmdline, group in groups.items():
                pending = list(group)
                why = f"command line +{' '.join(cmdline) or '(none)'}"
                while pending:
                    if time.monotonic() >= self.run_deadline:
                        for item in pending:
                            self.results[item.id].error = "not run: the whole-run timeout expired"
                        break
                    done = self._boot(cmdline, pending, why)
                    pending = [item for item in pending if item.id not in done]
                    yield [self.results[i.id] for i in items if i.id in self.finished]
                    if pending and self.boots:
                        why = f"reboot: {self.boots[-1].left_because or 'boot ended early'}"
        finally:
            if self.guest is not None:
                self.guest.stop()
                self.guest = None

    def _start(self, cmdline: tuple[str, ...], pending: list[Item], why: str) -> Path | None:
        """Write the boot's plan and start QEMU; the boot's directory, or None if QEMU did
        not start (the items then have that as their error)."""
        index = len(self.boots) + 1
        boot_dir = self.out / "boots" / f"boot-{index}"
        (boot_dir / "guest").mkdir(parents=True, exist_ok=True)
        plan = {
            "result_dir": str(boot_dir / "guest"),
            "modules": self.modules,
            "items": [i.plan_entry() for i in pending],
            "shell": self.shell,
        }
        (boot_dir / "plan.json").write_text(json.dumps(plan, indent=1))
        spec = BootSpec(
            self.kernel_image,
            self.accel,
            cmdline,
            plan=boot_dir / "plan.json",
            rwdirs=(boot_dir,),
            interactive=bool(self.shell),
        )
        self.guest = Guest(spec, boot_dir / "console.log")
        say(f"boot {index}: {len(pending)} item(s), {self.accel.name}; why: {why}")
        try:
            self.guest.start()
        except BootError as exc:
            self.guest = None
            for item in pending:
                self.results[item.id].error = f"could not start the guest: {exc}"
                decide(self.results[item.id])
                self.finished.add(item.id)
            return None
        record = BootRecord(index, str(boot_dir / "console.log"), cmdline, None, "running")
        record.qemu_command, record.accel, record.why = self.guest.command, self.accel.name, why
        self.boots.append(record)  # listed at once, so an interrupted run still has its console
        return boot_dir

    def _boot(self, cmdline: tuple[str, ...], pending: list[Item], why: str) -> set[str]:
        """One boot over ``pending``; return the ids that got a final result.

        Under KVM the kernel must print within ``accel.silence_timeout()``; if
        it does not (or QEMU reports a KVM failure), an auto-chosen KVM is
        dropped for TCG and nothing of this boot counts against the items.
        """
        boot_dir = self._start(cmdline, pending, why)
        if boot_dir is None:
            return {item.id for item in pending}
        guest, record = self.guest, self.boots[-1]
        by_id = {item.id: item for item in pending}
        progress = Progress(
            record.index,
            guest.started,
            min(self.run_deadline, time.monotonic() + BOOT_TIMEOUT[self.accel.name]),
            self.run_deadline,
            {item.id: item.scenario.timeout for item in pending},
        )
        silence = accel_mod.silence_timeout() if self.accel.name == "kvm" else None
        grace = FATAL_GRACE[self.accel.name]
        for ev in guest.events(lambda: progress.deadline_now(_signals(guest), silence, grace)):
            if ev.kind == "shell":
                paused = guest.interact()
                progress.pause(paused)  # no timeout runs while the developer looks around
                self.run_deadline += paused
                continue
            ending = progress.current
            line = progress.take(ev.kind, ev.fields, time.monotonic())
            self.current = by_id.get(progress.current or "")
            if line:
                say(line)
            if ending is not None and ending in progress.ended and ending not in self.announced:
                self._announce(boot_dir, by_id, ending)
        ended = guest.ended_reason
        if ended == "timeout" and progress.current is not None:
            say(f"  {progress.current}: no result in time; asking for the blocked tasks' stacks")
            guest.request_stacks(f"{progress.current} gave no result in time")
        guest.stop()
        self.guest = None
        record.seconds_to_ready = progress.ready_at
        record.ended = (
            "done" if ended == "exit" and progress.current is None and progress.ready_at else ended
        )
        kvm_problem = self._kvm_problem(guest, silence) if silence is not None else ""
        self._take_splats(boot_dir, by_id, progress, skip=progress.current if kvm_problem else None)
        if kvm_problem:
            record.ended = "kvm-failed"
            return self._kvm_failed(kvm_problem, progress, pending, boot_dir)
        return self._conclude(boot_dir, progress, ended, pending)

    def _take_splats(
        self, boot_dir: Path, by_id: dict[str, Item], progress: Progress, skip: str | None
    ) -> None:
        """The console's splats onto the items they are attributed to (``skip``: an item
        that runs again, whose splats this boot does not count)."""
        log_text = (boot_dir / "console.log").read_text(errors="replace")
        starts = splats.scenario_start_times(log_text)
        owned, self.boots[-1].outside_splats = attribute(log_text, list(by_id))
        for item_id, found in owned.items():
            if item_id == skip:
                continue
            result = self.results[item_id]
            for splat in found:
                if self.objects is not None:
                    splat.excerpt = symbols.decode_text(splat.excerpt, self.objects)
                result.splats.append(splat)
                timed = splat.time is not None and not splat.outside and item_id in starts
                if timed and not result.first_splat_s:
                    result.first_splat_s = round(splat.time - starts[item_id], 2)

    def _conclude(
        self, boot_dir: Path, progress: Progress, ended: str, pending: list[Item]
    ) -> set[str]:
        """Verdicts for what the boot finished, errors for what it left without a result."""
        console = boot_dir / "console.log"
        reported = {i.id for i in pending if kernel_reports(self.results[i.id])}
        found = conclude(
            progress, ended, [i.id for i in pending], reported, _tail(console), str(console)
        )
        record = self.boots[-1]
        record.left_because = progress.left_because or record.left_because
        record.ended_by = progress.ended_by or record.ended_by
        now = time.monotonic()
        for item_id in found.done:
            result = self.results[item_id]
            result.boot = progress.index
            if item_id in progress.ended:
                result.duration_s = progress.ended[item_id]
                self._load_guest_result(boot_dir, result)
            elif item_id == progress.current:
                result.duration_s = round(now - progress.current_started, 1)
            if item_id in found.errors:
                result.error = found.errors[item_id]
            if item_id in found.violations:
                result.violations.append(found.violations[item_id])
            self._finish(item_id, console)
        return found.done

    def _announce(self, boot_dir: Path, by_id: dict[str, Item], item_id: str) -> None:
        """The verdict of an item that just ended, from the console so far: printed at once,
        so a developer need not wait for the boot to end. A report the kernel prints after
        this (a deferred free) still counts: ``_finish`` then prints the changed verdict."""
        console = boot_dir / "console.log"
        owned, _ = attribute(console.read_text(errors="replace"), list(by_id))
        early = ItemResult(by_id[item_id], splats=owned.get(item_id, []))
        self._load_guest_result(boot_dir, early)
        _judge(early, console)
        self.announced[item_id] = verdict_line(early)
        say(self.announced[item_id])

    @staticmethod
    def _load_guest_result(boot_dir: Path, result: ItemResult) -> None:
        guest_file = boot_dir / "guest" / f"{result.item.id.replace('/', '_')}.json"
        try:
            result.guest = protocol.decode(protocol.ItemReport, json.loads(guest_file.read_text()))
        except (OSError, ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
            result.error = f"guest result unreadable: {exc}"

    def _finish(self, item_id: str, console: Path) -> None:
        """Turn what the guest reported (and the splats found) into the item's verdict."""
        result = self.results[item_id]
        _judge(result, console)
        self.finished.add(item_id)
        line = verdict_line(result)
        early = self.announced.get(item_id)
        if early is None:
            say(line)
        elif early != line:
            say(f"{line} [was {early.split(': ', 1)[1]} when it ended; the boot's end changed it]")

    def _kvm_problem(self, guest: Guest, silence: float) -> str:
        if guest.kvm_failure:
            return f"QEMU reported a KVM failure ({guest.kvm_failure[:200]})"
        if not guest.kernel_output:
            how = "and timed out" if guest.ended_reason == "timeout" else "before QEMU exited"
            return f"the KVM boot printed no kernel output within {silence:g} s {how}"
        return ""

    def _kvm_failed(
        self, problem: str, progress: Progress, pending: list[Item], boot_dir: Path
    ) -> set[str]:
        """KVM is broken here: fall back to TCG (auto) or error the items (KVM was forced)."""
        boot = progress.index
        console = boot_dir / "console.log"
        if self.accel.may_fall_back:
            self.accel = self.accel.fallen_back(f"boot {boot}: {problem}")
            self.boots[-1].left_because = f"KVM failed in boot {boot} ({problem}); using TCG"
            say(f"boot {boot}: {problem}; killed, booting again under TCG")
            for item_id in progress.ended:
                result = self.results[item_id]
                result.boot, result.duration_s = boot, progress.ended[item_id]
                self._load_guest_result(boot_dir, result)
                self._finish(item_id, console)
            return set(progress.ended)
        say(f"boot {boot}: {problem}")
        for item in pending:
            if item.id not in progress.ended:
                self.results[item.id].error = (
                    f"{problem}; KVM was forced (--accel kvm or HARNESS_ACCEL=kvm): "
                    "use auto (falls back to TCG) or tcg"
                )
                self.results[item.id].console = str(console)
                decide(self.results[item.id])
                self.finished.add(item.id)
        return {item.id for item in pending}


def _judge(result: ItemResult, console: Path) -> None:
    """Turn what the guest reported (and the splats found) into the item's verdict."""
    result.console = str(console)
    if result.guest:
        result.violations = list(result.guest.violations)
        if result.guest.error and not result.error:
            result.error = f"scenario error: {result.guest.error}"
        gained = result.guest.taint_gained
        if gained and not kernel_reports(result):
            result.violations.append(
                f"kernel tainted {gained} but no splat was recognised in the console "
                f"log: look at {console}"
            )
    decide(result)


def verdict_line(result: ItemResult) -> str:
    """'  id: FAIL (title; title)': an item's verdict as the run prints it."""
    titles = f" ({'; '.join(s.title for s in result.splats)})" if result.splats else ""
    return f"  {result.item.id}: {result.status.upper()}{titles}"


def _signals(guest: Guest) -> GuestSignals:
    return GuestSignals(guest.kernel_output, guest.kvm_failure, guest.fatal_at)

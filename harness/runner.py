"""Run scenario items in as few boots as possible and turn the outcome into verdicts.

Items that share a kernel command line run in one boot. A scenario that hangs,
crashes the guest or taints the kernel ends that boot; the remaining items get
a fresh one. Splats are read from each boot's console log and attributed to
the scenario whose kmsg markers surround them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from pathlib import Path

from harness import accel as accel_mod
from harness import splats
from harness.accel import Accel
from harness.boot import BootError, BootSpec, Guest
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


def attribute(log: str, ids: Collection[str]) -> tuple[dict[str, list[Splat]], list[Splat]]:
    """A boot's splats per item id, and those no item of the boot can take."""
    spans = splats.scenario_spans(log)
    owned: dict[str, list[Splat]] = {}
    outside: list[Splat] = []
    for splat in splats.parse(log):
        owner = (splat.scenario or "").split(" ")[0]
        if owner not in ids:
            found, splat.outside = outside_owner(splat.first_line, spans)
            owner = found or ""
        if owner in ids:
            owned.setdefault(owner, []).append(splat)
        else:
            outside.append(splat)
    return owned, outside


def outside_owner(line: int, spans: dict[str, tuple[int, int | None]]) -> tuple[str | None, str]:
    """The item a splat outside every scenario's markers counts against, and where it fell.

    A report after an item's end marker is most often that item's late work
    (a deferred free, a work item, a release on the last close), and one before
    the boot's first item means the kernel that item ran on was already broken:
    either way the kernel bug fails an item, so the run, a series and a
    bisection all count it.
    """
    started = sorted((start, name) for name, (start, _end) in spans.items())
    before = [name for start, name in started if start < line]
    if before:
        return before[-1], f"after {before[-1]} ended"
    if started:
        return started[0][1], f"during boot, before {started[0][1]} started"
    return None, "during boot, before any item"


class Runner:
    def __init__(
        self,
        kernel_image: Path,
        accel: Accel,
        out_dir: Path,
        run_deadline: float,
        modules: dict[str, str] | None = None,
        enough: Callable[[list[ItemResult]], str | None] | None = None,
    ):
        self.kernel_image = kernel_image
        # after each boot: a reason to stop running the rest (bisection: reproduced)
        self.enough = enough
        self.modules = modules or {}  # helper kernel modules the guest may insmod
        self.accel = accel
        self.out = out_dir
        self.run_deadline = run_deadline
        self.boots: list[BootRecord] = []
        self.guest: Guest | None = None
        self.results: dict[str, ItemResult] = {}
        self.current: Item | None = None  # the item running right now, if any
        self.finished: set[str] = set()  # items with a verdict (a hang's splats are one)

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
        results = self.results
        results.update({item.id: ItemResult(item) for item in items})
        groups: dict[tuple[str, ...], list[Item]] = {}
        for item in items:
            groups.setdefault(item.scenario.cmdline, []).append(item)
        try:
            for cmdline, group in groups.items():
                self._run_group(cmdline, group, results)
        finally:
            if self.guest is not None:
                self.guest.stop()
                self.guest = None
        return [results[item.id] for item in items]

    def _run_group(self, cmdline: tuple[str, ...], group: list[Item], results: dict) -> None:
        pending = list(group)
        why = f"command line +{' '.join(cmdline) or '(none)'}"
        while pending:
            if time.monotonic() >= self.run_deadline:
                for item in pending:
                    results[item.id].error = "not run: the whole-run timeout expired"
                return
            done = self._boot(cmdline, pending, results, why)
            pending = [item for item in pending if item.id not in done]
            finished = [results[i.id] for i in group if i not in pending]
            stop = self.enough(finished) if self.enough else None
            if stop and pending:
                say(f"not running {len(pending)} more item(s): {stop}")
                for item in pending:
                    results[item.id].error = f"not run: {stop}"
                    results[item.id].status = "skipped"
                return
            if pending and self.boots:
                why = f"reboot: {self.boots[-1].left_because or 'boot ended early'}"

    def _boot(
        self, cmdline: tuple[str, ...], pending: list[Item], results: dict, why: str
    ) -> set[str]:
        """One boot over ``pending``; return the ids that got a final result.

        Under KVM the kernel must print within ``accel.silence_timeout()``; if
        it does not (or QEMU reports a KVM failure), an auto-chosen KVM is
        dropped for TCG and nothing of this boot counts against the items.
        """
        index = len(self.boots) + 1
        boot_dir = self.out / "boots" / f"boot-{index}"
        boot_dir.mkdir(parents=True, exist_ok=True)
        result_dir = boot_dir / "guest"
        plan = {
            "result_dir": str(result_dir),
            "modules": self.modules,
            "items": [i.plan_entry() for i in pending],
        }
        plan_path = boot_dir / "plan.json"
        plan_path.write_text(json.dumps(plan, indent=1))
        spec = BootSpec(self.kernel_image, self.accel, cmdline, plan=plan_path, rwdirs=(boot_dir,))
        console = boot_dir / "console.log"
        self.guest = Guest(spec, console)
        say(f"boot {index}: {len(pending)} item(s), {self.accel.name}; why: {why}")
        try:
            self.guest.start()
        except BootError as exc:
            self.guest = None
            for item in pending:
                results[item.id].error = f"could not start the guest: {exc}"
                decide(results[item.id])
            return {item.id for item in pending}
        by_id = {item.id: item for item in pending}
        done: set[str] = set()
        current: Item | None = None
        record = BootRecord(
            index,
            str(console),
            cmdline,
            None,
            "running",
            self.guest.command,
            accel=self.accel.name,
            why=why,
        )
        self.boots.append(record)  # listed at once, so an interrupted run still has its console
        ready_at: float | None = None
        deadline = min(self.run_deadline, time.monotonic() + BOOT_TIMEOUT[self.accel.name])
        item_started = 0.0
        guest = self.guest
        silence = accel_mod.silence_timeout()
        watch_kvm = self.accel.name == "kvm"

        grace = FATAL_GRACE[self.accel.name]

        def current_deadline() -> float:
            if watch_kvm and not guest.kernel_output:
                return min(deadline, guest.started + silence)
            if guest.kvm_failure:
                return 0.0
            if current is not None and guest.fatal_at > item_started:
                return min(deadline, guest.fatal_at + grace)
            return deadline

        for ev in self.guest.events(current_deadline):
            if ev.kind == "ready":
                ready_at = time.monotonic() - self.guest.started
                say(
                    f"boot {index}: guest ready after {ready_at:.1f} s "
                    f"(kernel {ev.fields.get('kernel')})"
                )
            elif ev.kind == "start":
                current = self.current = by_id.get(ev.fields.get("id"))
                item_started = time.monotonic()
                if current:
                    deadline = min(self.run_deadline, item_started + current.scenario.timeout)
                    say(f"  {current.id}: started ({ev.fields.get('cycles')} cycle(s))")
            elif ev.kind == "cycle" and current:
                say(
                    f"  {current.id}: cycle {ev.fields.get('cycle')} done, "
                    f"{ev.fields.get('violations')} violation(s) so far"
                )
            elif ev.kind == "violation" and current:
                say(f"  {current.id}: {ev.fields.get('text')}")
            elif ev.kind == "end" and current:
                result = results[current.id]
                result.duration_s = round(time.monotonic() - item_started, 1)
                result.boot = index
                guest_file = result_dir / f"{current.id.replace('/', '_')}.json"
                try:
                    result.guest = json.loads(guest_file.read_text())
                except (OSError, json.JSONDecodeError) as exc:
                    result.error = f"guest result unreadable: {exc}"
                done.add(current.id)
                current = self.current = None
                deadline = min(self.run_deadline, time.monotonic() + 60)
            elif ev.kind in ("needs-reboot", "done"):
                deadline = min(deadline, time.monotonic() + 30)
                if ev.kind == "needs-reboot":
                    record.ended_by = str(ev.fields.get("id"))
                    record.left_because = (
                        f"{ev.fields['why']} in boot {index}"
                        if ev.fields.get("why")
                        else f"{ev.fields.get('id')} left the kernel tainted or a thread stuck "
                        f"in boot {index}"
                    )
        ended = self.guest.ended_reason
        if ended == "timeout" and current is not None:
            say(f"  {current.id}: no result in time; asking the kernel for blocked tasks' stacks")
            self.guest.request_stacks(f"{current.id} gave no result in time")
        self.guest.stop()
        self.guest = None
        record.seconds_to_ready = ready_at
        record.ended = "done" if ended == "exit" and current is None and ready_at else ended
        kvm_problem = self._kvm_problem(guest, silence) if watch_kvm else ""
        log_text = console.read_text(errors="replace")
        starts = splats.scenario_start_times(log_text)
        owned, record.outside_splats = attribute(log_text, by_id)
        for item_id, found in owned.items():
            target = by_id[item_id]
            if kvm_problem and target is current:  # that item runs again
                continue
            for splat in found:
                result = results[target.id]
                result.splats.append(splat)
                timed = splat.time is not None and not splat.outside and target.id in starts
                if timed and not result.first_splat_s:
                    result.first_splat_s = round(splat.time - starts[target.id], 2)
        if kvm_problem:
            record.ended = "kvm-failed"
            return self._kvm_failed(kvm_problem, current, done, pending, results, console)
        tail = _tail(console)
        if current is not None:
            result = results[current.id]
            result.boot = index
            result.console = str(console)
            result.duration_s = round(time.monotonic() - item_started, 1)
            if kernel_reports(result):  # the splat is the verdict; the guest could not say more
                result.violations.append(
                    f"the guest runner stopped reporting after the kernel's report ({ended}); "
                    f"console: {console}"
                )
            elif ended == "timeout":
                result.error = (
                    f"timeout: no result within {current.scenario.timeout:g} s "
                    f"(guest hung?); console tail:\n{tail}"
                )
            else:
                result.error = f"the guest died during the scenario; console tail:\n{tail}"
            record.left_because = f"{current.id} ended boot {index} ({ended})"
            record.ended_by = current.id
            done.add(current.id)
        elif ready_at is None:
            for item in pending:
                results[
                    item.id
                ].error = (
                    f"the kernel did not reach the guest runner ({ended}); console tail:\n{tail}"
                )
                results[item.id].console = str(console)
            done.update(i.id for i in pending)
        for item_id in done:
            self._finish(item_id, results, console)
        if not done and ready_at is not None:
            # the runner came up but finished nothing: do not loop forever
            for item in pending:
                results[
                    item.id
                ].error = f"guest ended ({ended}) before running anything; console tail:\n{tail}"
            done.update(i.id for i in pending)
        return done

    def _finish(self, item_id: str, results: dict, console: Path) -> None:
        """Turn what the guest reported (and the splats found) into the item's verdict."""
        result = results[item_id]
        result.console = str(console)
        if result.guest:
            result.violations = list(result.guest.get("violations", []))
            if result.guest.get("error") and not result.error:
                result.error = f"scenario error: {result.guest['error']}"
            gained = result.guest.get("taint_gained")
            if gained and not kernel_reports(result):
                result.violations.append(
                    f"kernel tainted {gained} but no splat was recognised in the console "
                    f"log: look at {console}"
                )
        decide(result)
        self.finished.add(item_id)
        say(
            f"  {item_id}: {result.status.upper()}"
            + (f" ({'; '.join(s.title for s in result.splats)})" if result.splats else "")
        )

    def _kvm_problem(self, guest: Guest, silence: float) -> str:
        if guest.kvm_failure:
            return f"QEMU reported a KVM failure ({guest.kvm_failure[:200]})"
        if not guest.kernel_output:
            how = "and timed out" if guest.ended_reason == "timeout" else "before QEMU exited"
            return f"the KVM boot printed no kernel output within {silence:g} s {how}"
        return ""

    def _kvm_failed(
        self,
        problem: str,
        current: Item | None,
        done: set[str],
        pending: list[Item],
        results: dict,
        console: Path,
    ) -> set[str]:
        """KVM is broken here: fall back to TCG (auto) or error the items (KVM was forced)."""
        boot = self.boots[-1].index
        if self.accel.may_fall_back:
            self.accel = self.accel.fallen_back(f"boot {boot}: {problem}")
            self.boots[-1].left_because = f"KVM failed in boot {boot} ({problem}); using TCG"
            say(f"boot {boot}: {problem}; killed, booting again under TCG")
            finished = {i for i in done if current is None or i != current.id}
            for item_id in finished:
                self._finish(item_id, results, console)
            return finished
        say(f"boot {boot}: {problem}")
        for item in pending:
            if item.id not in done:
                results[item.id].error = (
                    f"{problem}; KVM was forced (--accel kvm or HARNESS_ACCEL=kvm): "
                    "use auto (falls back to TCG) or tcg"
                )
                results[item.id].console = str(console)
                decide(results[item.id])
        return {item.id for item in pending}

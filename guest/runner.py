"""Guest side: run scenario items inside the VM and hand results back to the host.

Started by guest/init.py (PID 1) with the plan the host wrote. For each item it
marks the scenario in the kernel log (``harness: scenario-start/end ID`` via
/dev/kmsg, so the host can attribute splats), sets fixtures up, runs workers
and the action timeline cycle by cycle, checks what can be checked from user
space (errnos, hangs, proof that work happened, taint, slab growth) and writes
``<results>/guest/<id>.json``. Progress goes to the kernel log as ``harness-event {json}``.

If a scenario leaves the kernel tainted or a thread stuck, the runner stops:
the host boots a fresh kernel for the remaining items.
"""

from __future__ import annotations

import gc
import json
import os
import random
import re
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from guest import blocked, fixtures, protocol, provider, shell
from guest import workers as worker_types
from guest.provider import FixtureError
from guest.waits import poll
from guest.workers.base import Handle, Worker

REMOVING = ("remove", "unbind", "unplug")
RESTORING = ("create", "bind", "replug")
POINT_WAIT_MAX = 30.0  # how long an unplug 'point' may wait for the readers to get there
TAINT_LETTERS = "PFSRMBUDAWCIOELKXTNJ"  # bit N = letter N (kernel/panic.c taint_flags)
# Taint that says where code came from, not that something went wrong: loading
# the harness's own out-of-tree helper modules sets O, and that is not a result.
TAINT_PROVENANCE = "PFRCOEKTN"
# Bits after which going on with the timeline only burns time: a KASAN report
# (B, bad page) or an Oops (D, the task died, possibly holding locks).
TAINT_FATAL = "BD"
MIDREAD_WINDOW = 0.5
SELFTEST_TRIGGER = Path("/sys/kernel/debug/splat_selftest/trigger")  # guest/modules/splat_selftest
MIDREAD_WINDOW_MAX = 5.0
# The guest stops waiting for work this long before the host's scenario timeout,
# so a slow machine ends with a result (a min_ops violation), not a killed guest.
DEADLINE_MARGIN = 0.1
DEADLINE_MARGIN_MAX = 30.0
# The host's item timeout may end a wait for blocked tasks this long before it
# passes, so that the result (not a killed guest) reaches it.
HOST_MARGIN = 3.0


kmsg = provider.kmsg


def event(kind: str, **fields) -> None:
    kmsg("harness-event " + json.dumps({"event": kind, **fields}, separators=(",", ":")))


def dump_blocked(
    reason: str, stuck: int | None = None, waiting: Sequence[threading.Thread] = ()
) -> None:
    """Put the stacks of every blocked (D state) task into the kernel log: what is stuck.

    ``stuck`` (a thread id) names the task the host titles the hang by. ``waiting``:
    runner threads that never came back, whose kernel stacks go first (in any state, so
    a wait that never ends in S shows too); the host titles the dump by the first, still
    as the harness's dump (a timeout unless the hung-task detector saw a hang too).
    """
    which = f"; stuck: pid {stuck}" if stuck else ""
    if waiting and not stuck:
        which = f"; waiting: pid {waiting[0].native_id}"
    kmsg(f"harness: {reason}; stacks of blocked tasks follow (sysrq w{which})")
    for thread in waiting:
        state, frames = blocked.kernel_stack(thread.native_id)
        kmsg(f"harness-stack: task:{thread.name} state:{state} pid:{thread.native_id}")
        for frame in frames:
            kmsg(f" {frame}")
    try:
        Path("/proc/sysrq-trigger").write_text("w")
    except OSError as exc:
        kmsg(f"harness: no sysrq ({exc.strerror}); CONFIG_MAGIC_SYSRQ is needed for stacks")


def taint() -> int:
    return int(Path("/proc/sys/kernel/tainted").read_text())


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:  # the kernel was built without this detector
        return ""


def detectors_off(lockdep_stats: str, hung_task_warnings: str, tainted: int = 0) -> list[str]:
    """Detectors this kernel has that have switched themselves off, each with why.

    Lockdep stops after its first report (debug_locks_off(), no taint), the
    hung-task detector after hung_task_warnings reports, KASAN after its first
    report (one-shot, see harness/boot.py BASE_CMDLINE): the items after that
    would run unwatched, so they need a fresh boot. Empty texts: not built in.
    """
    off = []
    locks = re.search(r"^\s*debug_locks:\s+(\d+)", lockdep_stats, re.M)
    if locks and locks.group(1) == "0":
        off.append("lockdep turned itself off (debug_locks is 0 in /proc/lockdep_stats)")
    if hung_task_warnings.strip() == "0":
        off.append("the hung-task detector used up its reports (hung_task_warnings is 0)")
    if tainted & (1 << TAINT_LETTERS.index("B")):
        off.append("KASAN has reported in this boot (taint B) and reports only its first bug")
    return off


def detectors_off_now() -> list[str]:
    return detectors_off(
        _read("/proc/lockdep_stats"), _read("/proc/sys/kernel/hung_task_warnings"), taint()
    )


def _progressed(worker: Worker, before: dict) -> bool:
    now = worker.snapshot()
    return now["ops"] > before[worker.name]["ops"] or now["bytes"] > before[worker.name]["bytes"]


def taint_gained(before: int, after: int) -> str:
    """Letters of the taint bits set since ``before`` that signal trouble (not provenance)."""
    gained = after & ~before
    return "".join(
        letter
        for bit, letter in enumerate(TAINT_LETTERS)
        if gained & (1 << bit) and letter not in TAINT_PROVENANCE
    )


def slab_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Slab:"):
            return int(line.split()[1])
    return 0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class HarnessError(Exception):
    """The harness (an emulator, the runner) failed: the item gets no verdict."""


class ScenarioRun:
    def __init__(self, item: protocol.PlanItem, modules: dict[str, str], shell: str = ""):
        self.item = item
        self.modules = modules
        self.shell = shell  # protocol.Plan.shell
        self.watchdog: threading.Timer | None = None
        self.sc = item.scenario
        self.expect = self.sc.expect
        self.id = item.id
        self.rng = random.Random(item.seed)
        self.violations: list[str] = []
        self.actions: list[dict] = []
        self.fixtures: dict[str, provider.Fixture] = {}
        self.held: list[tuple[int, Handle]] = []
        self.totals: dict[str, dict] = {}
        self.needs_reboot = False
        self.taint_start = 0
        self.kernel_hit = False  # KASAN/Oops seen: worker symptoms after it are not reported
        self.cycle = 0
        self.removed_this_cycle: set[str] = set()  # providers gone right now
        self.removed_in_cycle: set[str] = set()  # providers that went away at some point this cycle
        self.identities: dict[str, list[str]] = {}  # fixture -> kernel names seen, in order
        self.leaked = False  # a provider came back under more names than the bound: stop
        self.deadline = 0.0  # monotonic; waits for work end here (set in execute)
        # fixture -> fixtures its device uses (an EEPROM's wp GPIO chip)
        self.depends = {f.name: set(f.depends_on) for f in self.sc.fixtures}

    def _affected(self, worker: Worker, removed: set[str]) -> bool:
        """Whether ``removed`` took the worker's provider, or one its provider uses, away."""
        fixture = worker.spec.fixture
        if fixture is None:
            return bool(removed)
        return fixture in removed or bool(self.depends.get(fixture, set()) & removed)

    def violate(self, text: str) -> None:
        self.violations.append(f"cycle {self.cycle}: {text}")
        event("violation", id=self.id, text=self.violations[-1])

    # --- fixtures ------------------------------------------------------------

    def setup_fixtures(self) -> None:
        usb_index = 0
        for index, spec in enumerate(self.sc.fixtures):
            udc = f"dummy_udc.{usb_index}"
            usb_index += fixtures.uses_usb(spec.type)
            instance = f"harness-{os.getpid()}-{index}"
            fixture = fixtures.make(spec, instance, udc, self.modules)
            self.fixtures[spec.name] = fixture
            fixture.setup()
            self._note_identity(spec.name)

    def teardown_fixtures(self) -> None:
        for fixture in self.fixtures.values():
            try:
                fixture.teardown()
            except (OSError, FixtureError) as exc:
                self.violate(f"teardown of {fixture.name} failed: {exc}")

    def resolve(self, template: str) -> str:
        values = {
            f"{name}.{key}": value
            for name, fixture in self.fixtures.items()
            for key, value in fixture.values().items()
        }
        out = template
        for key, value in values.items():
            out = out.replace("{" + key + "}", value)
        if left := re.findall(r"\{[\w-]+\.\w+\}", out):
            # `harness check` refuses unknown templates: this is a harness/schema mismatch
            raise HarnessError(f"{template!r}: no fixture gives {', '.join(left)}")
        return out

    # --- actions -------------------------------------------------------------

    def _targets(self, workers: list[Worker], fixture: str | None) -> list[Worker]:
        """The workers that use ``fixture``, directly or through one that depends on it
        (writers of an EEPROM whose wp GPIO chip it is); all of them for None."""
        return [w for w in workers if fixture is None or self._affected(w, {fixture})]

    def _wait_trigger(self, action: dict, workers: list[Worker], cycle_start: float) -> None:
        """Wait for the action's time and/or worker-ops condition, plus its seeded jitter.

        The jitter varies where in the consumers' operations the action lands,
        reproducibly for a given seed.
        """
        if action.at is not None:
            delay = cycle_start + action.at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if action.after_worker:
            worker = next(w for w in workers if w.name == action.after_worker)
            poll(
                lambda: worker.ops >= action.after_ops
                or worker.alive() == 0
                or self._fatal_taint(),
                self.deadline - time.monotonic(),
                interval=0.01,
            )
            if worker.ops < action.after_ops and not self._fatal_taint():
                self.violate(
                    f"{action.do} was to wait for {worker.name} to do {action.after_ops} "
                    f"ops; it did {worker.ops} ({worker.alive()} threads alive): "
                    "the consumer did not really run"
                )
        if action.jitter:
            time.sleep(self.rng.uniform(0.0, action.jitter))

    def _perform(self, action: dict, step: int) -> dict:
        """Carry the action out; returns what it recorded about itself (unplug points)."""
        do, fixture = action.do, self.fixtures.get(action.fixture or "")
        if do == "sleep":
            time.sleep(action.duration)
        elif do == "provoke" and action.via == "splat_selftest":
            provider.insmod(self.modules, "splat_selftest", SELFTEST_TRIGGER)
            SELFTEST_TRIGGER.write_text(action.what)
        elif do == "provoke":
            Path("/sys/kernel/debug/provoke-crash/DIRECT").write_text(action.what)
        elif do == "remove":
            fixture.remove()
        elif do == "unplug":
            block = self._read_block(action.fixture)
            return fixture.unplug(action.point, action.point_count, POINT_WAIT_MAX, block)
        elif do in ("create", "replug"):
            fixture.create()
            self._note_identity(action.fixture)
        elif do == "unbind":
            fixture.unbind(action.level)
        elif do == "bind":
            fixture.bind(action.level)
            self._note_identity(action.fixture)
        else:
            fixture.perform(action, step)
        return {}

    def _read_block(self, fixture: str) -> int:
        """The smallest read() size of the fixture's block readers (0: none read it)."""
        sizes = [
            w.block_size
            for w in self.sc.workers
            if w.fixture == fixture and worker_types.worker_class(w.type).reads_in_blocks
        ]
        return min(sizes, default=0)

    def _note_identity(self, name: str) -> None:
        """Record the provider's kernel name; past the bound the leak is proven and the
        item stops there (more cycles only leak more), so its time is the time to it."""
        seen = self.identities.setdefault(name, [])
        identity = self.fixtures[name].identity()
        if identity in seen:
            return
        seen.append(identity)
        id_limit = self.expect.max_identities
        if id_limit is not None and len(seen) > id_limit and not self.leaked:
            self.leaked = True
            self.violate(
                f"{name} came back under {len(seen)} different kernel names "
                f"({', '.join(seen)}) "
                f"in {self.cycle + 1} cycles (bound {id_limit}): the removed provider's "
                "number was never freed, so something still holds a reference to it"
            )

    def wait_min_ops(self, workers: list[Worker]) -> None:
        """Wait until every running worker has done its min_ops this cycle.

        Proof of work is a count, not a time: a slower machine waits longer
        (up to the scenario's deadline) instead of failing with fewer ops.
        """
        poll(
            lambda: self._fatal_taint()
            or not any(w.alive() and w.ops < w.spec.min_ops for w in workers),
            self.deadline - time.monotonic(),
            interval=0.01,
        )

    def run_action(self, action: dict, workers: list[Worker], cycle_start: float) -> None:
        self._wait_trigger(action, workers, cycle_start)
        do = action.do
        if do in REMOVING:  # the consumers' work this cycle must be done before they lose it
            self.wait_min_ops(self._targets(workers, action.fixture))
        if do == "wait-workers":
            self._wait_workers(workers)
            return
        if do == "wait-ops":
            t0 = time.monotonic()
            self.wait_min_ops(self._targets(workers, action.fixture))
            self.actions.append(
                {"cycle": self.cycle, "do": do, "latency_s": round(time.monotonic() - t0, 4)}
            )
            return
        record: dict = {"cycle": self.cycle, "do": do, "fixture": action.fixture}
        if do in REMOVING:
            record["midread"] = self._midread(workers, action.fixture)
        latencies, began = self._steps(action, record)
        if do in REMOVING:
            self.removed_this_cycle.add(action.fixture)
            self.removed_in_cycle.add(action.fixture)
            for w in self._targets(workers, action.fixture):  # its own or one it uses
                w.mark_removal(began or time.monotonic())
        if do in RESTORING and "error" not in record:
            self.removed_this_cycle.discard(action.fixture)
            for w in self._targets(workers, action.fixture):
                w.mark_restored(time.monotonic())
        record["latency_s"] = round(max(latencies, default=0.0), 4)
        record["repeats"] = len(latencies)
        self.actions.append(record)
        event("action", id=self.id, cycle=self.cycle, do=do, latency_s=record["latency_s"])

    def _steps(self, action: dict, record: dict) -> tuple[list[float], float | None]:
        """The action's repeats, each in a thread bounded by ``within``: their latencies,
        and when the removal really began (an unplug at a point: the unplug)."""
        do = action.do
        bound = action.within or self.expect.action_within
        latencies: list[float] = []
        began = None
        for step in range(action.repeat):
            t0 = time.monotonic()
            began = began or t0
            outcome, alive = self._step(action, step, bound)
            latency = (outcome.get("detail") or {}).get("unplug_s", time.monotonic() - t0)
            if alive:
                self.violate(f"{do} {action.fixture or ''} did not return within {bound:g} s")
                dump_blocked(f"{do} {action.fixture or ''} did not return", outcome.get("tid"))
                record["hung"] = True
                self.needs_reboot = True
                break
            if "harness_error" in outcome:
                raise HarnessError(f"{do} {action.fixture or ''}: {outcome['harness_error']}")
            latencies.append(latency)
            if outcome.get("detail"):
                began = outcome["detail"].pop("began", began)
                record["point"] = outcome["detail"]
                self._check_point(action, outcome["detail"], bound)
            if "error" in outcome:
                self.violate(f"{do} {action.fixture or ''} failed: {outcome['error']}")
                record["error"] = outcome["error"]
                break
            if action.interval:
                time.sleep(action.interval)
        return latencies, began

    def _step(self, action: dict, step: int, bound: float) -> tuple[dict, bool]:
        """One repeat in its own thread; what it returned, and whether it is still running."""
        outcome: dict = {}

        def body() -> None:
            outcome["tid"] = threading.get_native_id()
            try:
                outcome["detail"] = self._perform(action, step)
            except (OSError, FixtureError) as exc:
                outcome["error"] = str(exc)
            except Exception:  # an emulator's or the harness's fault, not the kernel's
                outcome["harness_error"] = traceback.format_exc()

        thread = threading.Thread(target=body, daemon=True, name=f"action-{action.do}")
        thread.start()
        thread.join(bound + (POINT_WAIT_MAX if action.point else 0.0))
        return outcome, thread.is_alive()

    def _check_point(self, action: dict, detail: dict, bound: float) -> None:
        """An unplug at a point must land where asked, and itself return in bounded time."""
        if detail.get("unplug_s", 0.0) > bound:
            self.violate(
                f"unplug {action.fixture} took {detail['unplug_s']:g} s (bound {bound:g} s)"
            )
        if detail["point"] == "halfway" and not detail["mid_read"]:
            self.violate(
                f"unplug {action.fixture} was to land halfway through a read, but came at "
                f"byte {detail['position_in_read']} of {detail['read_size']}"
            )

    def _midread(self, workers: list[Worker], fixture: str | None) -> dict:
        """Prove the consumers were busy right before the provider went away.

        An edge waiter's events come from the scenario's actions, not at its own
        pace: its proof is the min_ops events it read this cycle before the removal.
        """
        targets = self._targets(workers, fixture)
        paced = [w for w in targets if w.paced]
        before = {w.name: w.snapshot() for w in targets}
        time.sleep(MIDREAD_WINDOW)
        # ops longer than the window (slow buses, slow machines) need a longer look:
        # a few of the longest op seen here, so the proof does not depend on speed
        longest = max((w.longest_op() for w in targets), default=0.0)
        window = max(MIDREAD_WINDOW_MAX, 3 * longest)
        deadline = min(self.deadline, time.monotonic() + window)
        while time.monotonic() < deadline and not all(_progressed(w, before) for w in paced):
            time.sleep(0.02)
        proof = {}
        for w in targets:
            snap = w.snapshot()
            snap["ops_in_window"] = snap["ops"] - before[w.name]["ops"]
            snap["bytes_in_window"] = snap["bytes"] - before[w.name]["bytes"]
            proof[w.name] = snap
            if w not in paced:
                if self.expect.require_midread and (
                    snap["alive_threads"] == 0 or snap["ops"] < w.spec.min_ops
                ):
                    self.violate(
                        f"worker {w.name} had read {snap['ops']} edge events "
                        f"(min_ops {w.spec.min_ops}, {snap['alive_threads']} threads alive) "
                        f"when {fixture} was removed: no proof edges arrived before it"
                    )
                continue
            busy = snap["ops_in_window"] or snap["bytes_in_window"]  # long ops count by bytes
            if self.expect.require_midread and (snap["alive_threads"] == 0 or not busy):
                self.violate(
                    f"worker {w.name} was not running when {fixture} was removed "
                    f"({snap['alive_threads']} threads alive, {snap['ops_in_window']} ops and "
                    f"{snap['bytes_in_window']} bytes in up to {window:.1f} s): "
                    "the removal did not come mid-read"
                )
        return proof

    def _wait_workers(self, workers: list[Worker]) -> None:
        bound = self.expect.workers_exit_within
        deadline = time.monotonic() + bound
        t0 = time.monotonic()
        targets = [
            w
            for w in workers
            if w.spec.fixture in self.removed_this_cycle and w.spec.on_error == "stop"
        ]
        hit = False
        while time.monotonic() < deadline and any(w.alive() for w in targets):
            if self._fatal_taint():
                hit = True  # readers killed by an Oops never return; the caller reports it
                break
            time.sleep(0.01)
        waited = time.monotonic() - t0
        self.actions.append(
            {"cycle": self.cycle, "do": "wait-workers", "latency_s": round(waited, 4)}
        )
        if not hit and any(w.alive() for w in targets):
            dump_blocked(
                "consumers still running after their provider was removed",
                waiting=[t for w in targets for t in w.running()],
            )
        for w in [] if hit else targets:
            if w.alive():
                self.violate(
                    f"worker {w.name}: {w.alive()} thread(s) still running {bound:g} s after "
                    f"{w.spec.fixture} was removed (no error returned, or blocked)"
                )

    # --- cycles --------------------------------------------------------------

    def run_cycle(self) -> None:
        self.removed_this_cycle = set()
        self.removed_in_cycle = set()
        for fixture in self.fixtures.values():
            if not fixture.present():
                fixture.create()
        workers = self._start_workers()
        cycle_start = time.monotonic()
        for action in self.sc.actions:
            self.run_action(action, workers, cycle_start)
            if self._kernel_hit(" ".join(filter(None, (action.do, action.fixture)))):
                break
            if self.needs_reboot:
                break
        if not (self.kernel_hit or self.needs_reboot):
            present = [w for w in workers if w.spec.fixture not in self.removed_this_cycle]
            self.wait_min_ops(present)
            poll(
                lambda: self._fatal_taint()
                or not any(w.short_after_removal(alive_only=True) for w in workers),
                self.deadline - time.monotonic(),
                interval=0.01,
            )
        removed = set(self.removed_in_cycle)
        ended_before_stop = {w.name: [s.end_errno for s in w.states] for w in workers}
        self._stop_workers(workers)
        self._check_workers(workers, removed, ended_before_stop)
        for w in workers:
            self._release(w)
        self._close_held()

    def _start_workers(self) -> list[Worker]:
        written = {
            s.fixture for s in self.sc.workers if worker_types.worker_class(s.type).writes_fixture
        }
        started = [
            worker_types.make(
                spec,
                self.resolve,
                self.fixtures.get(spec.fixture or ""),
                self.item.seed,
                guarded=spec.fixture in written,
            )
            for spec in self.sc.workers
        ]
        for w in started:
            w.start()
            if w.setup_error:
                self.violate(f"worker {w.setup_error}")
        return started

    def _stop_workers(self, workers: list[Worker]) -> None:
        """Stop every worker; threads that never return are a hang (and need a new boot)."""
        for w in workers:
            w.stop()
        for w in workers:
            stuck = w.join(0.5 if self.kernel_hit else self.expect.workers_exit_within)
            if stuck:
                self.needs_reboot = True
            if stuck and not self.kernel_hit:
                self.violate(f"worker threads blocked and never returned: {', '.join(stuck)}")
                dump_blocked(
                    f"worker threads blocked: {', '.join(stuck)}",
                    waiting=w.running(),
                )

    def _fatal_taint(self) -> str:
        """The KASAN/Oops taint letters this item has caused so far ("" if none)."""
        return "".join(f for f in taint_gained(self.taint_start, taint()) if f in TAINT_FATAL)

    def _kernel_hit(self, where: str) -> bool:
        """True (and the rest of the item is skipped) once KASAN or an Oops tainted the kernel."""
        flags = self._fatal_taint()
        if not flags or self.kernel_hit:
            return bool(flags)
        self.violate(
            f"kernel tainted {flags} during {where}; the rest of this item is skipped "
            "(the splat is in the console log)"
        )
        self.needs_reboot = self.kernel_hit = True
        return True

    def _check_workers(self, workers: list[Worker], removed: set[str], ended: dict) -> None:
        for w in workers:
            stats = w.stats()
            self._add_totals(w, stats)
            self._check_data(w, stats)
            if stats["setup_error"] or self.kernel_hit:
                continue
            self._check_work(w, stats)
            self._check_errors(w, stats, self._affected(w, removed), ended)

    def _add_totals(self, w: Worker, stats: dict) -> None:
        """Add a cycle's statistics of ``w`` to its totals over the item."""
        total = self.totals.setdefault(
            w.name,
            {
                "type": w.kind,
                "threads": stats["threads"],
                "ops": 0,
                "min_cycle_ops": None,
                "errors": {},
                "end_errnos": {},
                "longest_op_s": 0.0,
            },
        )
        total["ops"] += stats["ops"]
        total["min_cycle_ops"] = (
            stats["ops"]
            if total["min_cycle_ops"] is None
            else min(total["min_cycle_ops"], stats["ops"])
        )
        for key in ("errors", "end_errnos"):
            for name, count in stats[key].items():
                total[key][name] = total[key].get(name, 0) + count
        total["longest_op_s"] = max(total["longest_op_s"], stats["longest_op_s"])
        total["bytes"] = total.get("bytes", 0) + stats["bytes"]
        total["bytes_verified"] = total.get("bytes_verified", 0) + stats["bytes_verified"]
        if after := w.after_removal():  # per thread, what the consumers did once it was gone
            summed = total.setdefault("after_removal", [{"ops": 0, "failed": 0} for _ in after])
            for into, done in zip(summed, after, strict=True):
                into["ops"] += done["ops"]
                into["failed"] += done["failed"]
        total["mismatches"] = (total.get("mismatches", []) + stats["mismatches"])[:10]
        total["revoked_reads"] = total.get("revoked_reads", 0) + stats["revoked_reads"]

    def _check_data(self, w: Worker, stats: dict) -> None:
        """What the consumers read must be right: the model's bytes, a revocable's answer."""
        if stats["mismatches"]:
            self.violate(
                f"worker {w.name} saw data that differs from the model (or from what it "
                f"wrote) at byte(s) "
                f"{stats['mismatches']}"
            )
        if stats["wrong"]:
            self.violate(f"worker {w.name}: {stats['wrong'][0]} ({len(stats['wrong'])} time(s))")
        elif w.failed_read_is_wrong and stats["errors"]:
            # a revoked resource is an answer ("(null)"), never a failed read
            self.violate(f"worker {w.name}: reads of the consumer file failed: {stats['errors']}")

    def _check_work(self, w: Worker, stats: dict) -> None:
        """Proof the work happened: whole files read to the end, tries after a removal, ops."""
        short, cut = w.short_files()
        if cut:
            total = self.totals[w.name]
            total["files_cut_by_removal"] = total.get("files_cut_by_removal", 0) + cut
        if short:
            self.violate(
                f"worker {w.name}: {len(short)} whole-file read(s) with the provider present "
                f"did not end at the chip's end (read {', '.join(short[:3])}): not every "
                "byte was read and checked"
            )
        if not self.needs_reboot and (short := w.short_after_removal()):
            self.violate(
                f"worker {w.name}: thread(s) tried fewer than "
                f"{w.spec.min_ops_after_removal} ops after the removal of "
                f"{w.spec.fixture or 'a fixture'} or what it uses "
                f"({', '.join(short)}): the consumers were not tried after it"
            )
        if stats["ops"] < w.spec.min_ops:
            self.violate(f"worker {w.name} did {stats['ops']} ops (min_ops {w.spec.min_ops})")

    def _check_errors(self, w: Worker, stats: dict, affected: bool, ended: dict) -> None:
        """Errors only once the provider is gone, only allowed ones, and every thread ended."""
        allowed = set(self.expect.worker_errnos)
        if not affected and stats["errors"]:
            self.violate(f"worker {w.name} got errors with its provider present: {stats['errors']}")
            return
        unexpected = {e: n for e, n in stats["errors"].items() if allowed and e not in allowed}
        if unexpected:
            self.violate(f"worker {w.name} got {unexpected}; allowed: {', '.join(sorted(allowed))}")
        if affected and self.expect.workers_must_fail and w.spec.on_error == "stop":
            running = sum(1 for e in ended[w.name] if e is None)
            if running:
                self.violate(
                    f"worker {w.name}: {running} of {len(ended[w.name])} thread(s) kept "
                    "working after the provider was removed (no error)"
                )

    def _release(self, w: Worker) -> None:
        hold = w.spec.hold_cycles
        for handle in w.handles:
            if hold:
                self.held.append((self.cycle + hold, handle))
            else:
                self._close(handle, w.name)

    def _close(self, handle: Handle, owner: str) -> None:
        """close() in a thread of its own: an Oops in it kills that thread, not the runner."""
        problems: list[str] = []
        closer = threading.Thread(
            target=lambda: problems.extend(handle.close()), daemon=True, name=f"close-{owner}"
        )
        closer.start()
        closer.join(self.expect.workers_exit_within)
        if self._kernel_hit(f"close() of {owner}'s fd"):
            return
        if closer.is_alive():
            self.needs_reboot = True
            self.violate(f"close() of {owner}'s fd did not return")
            dump_blocked(f"close() of {owner}'s fd did not return")
        elif problems:
            self.violate(f"close() of {owner}'s fd failed: {problems}")

    def _close_held(self, everything: bool = False) -> None:
        keep = []
        for release_cycle, handle in self.held:
            if everything or release_cycle <= self.cycle:
                self._close(handle, "held")
            else:
                keep.append((release_cycle, handle))
        self.held = keep

    # --- whole scenario ------------------------------------------------------

    def _identity(self) -> dict:
        """What every result of this item starts with: which item it is."""
        return {
            "id": self.id,
            "scenario": self.sc.name,
            "repetition": self.item.repetition,
            "seed": self.item.seed,
        }

    def unwatched(self, why: str) -> protocol.ItemReport:
        """The result of an item not run because a detector was already off after boot."""
        event("start", id=self.id, cycles=0)
        return protocol.ItemReport(
            **self._identity(),
            cycles_done=0,
            cycles=self.sc.cycles,
            error=f"not run: {why} before this item (during boot), so it would run unwatched",
            violations=[],
            workers={},
            actions=[],
            needs_reboot=False,
        )

    def execute(self) -> protocol.ItemReport:
        started = time.monotonic()
        timeout = self.sc.timeout
        self.deadline = started + timeout - min(DEADLINE_MARGIN * timeout, DEADLINE_MARGIN_MAX)
        taint_before = self.taint_start = taint()
        fds_before = open_fds()
        kmsg(f"harness: scenario-start {self.id}")
        event("start", id=self.id, cycles=self.sc.cycles)
        # if the runner itself gets stuck, the host's timeout comes with stacks
        self.watchdog = threading.Timer(
            max(0.0, self.deadline - time.monotonic()),
            dump_blocked,
            args=(f"{self.id} reached its deadline",),
        )
        self.watchdog.daemon = True
        self.watchdog.start()
        error, slab = self._cycles()
        self.watchdog.cancel()
        if not self.needs_reboot:
            self._check_blocked(started + timeout - HOST_MARGIN)
        fds_after = open_fds()
        taint_after = taint()
        kmsg(f"harness: scenario-end {self.id}")
        growth = None if slab[0] is None else slab[1] - slab[0]
        self._check_leaks(growth, fds_before, fds_after)
        if taint_gained(taint_before, taint_after):
            self.needs_reboot = True
        return protocol.ItemReport(
            **self._identity(),
            cycles_done=self.cycle + 1 if error is None else self.cycle,
            cycles=self.sc.cycles,
            error=error,
            violations=self.violations,
            workers=self.totals,
            actions=self.actions,
            needs_reboot=self.needs_reboot,
            taint_before=taint_before,
            taint_after=taint_after,
            taint_gained=taint_gained(taint_before, taint_after),
            slab_kb_cycle0=slab[0],
            slab_kb_end=slab[1],
            slab_growth_kb=growth,
            identities=self.identities,
            fds_before=fds_before,
            fds_after=fds_after,
            duration_s=round(time.monotonic() - started, 2),
        )

    def _cycles(self) -> tuple[str | None, tuple[int | None, int | None]]:
        """Set up, run the cycles, tear down: the item's error (None: it ran), and Slab
        after cycle 0 and at the end."""
        slab_first = slab_last = None
        error = None
        try:
            self.setup_fixtures()
            if self.shell == "before":
                self.open_shell("before its first removal")
                return "stopped before its first removal for --shell=before", (None, None)
            for cycle in range(self.sc.cycles):
                self.cycle = cycle
                self.run_cycle()
                if self.cycle == 0:
                    slab_first = slab_kb()
                slab_last = slab_kb()
                event("cycle", id=self.id, cycle=self.cycle, violations=len(self.violations))
                if self.needs_reboot or self.leaked:
                    break
        except FixtureError as exc:
            error = str(exc)
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except Exception:  # the harness's own fault (an emulator, a bug): no verdict
            error = f"harness error:\n{traceback.format_exc()}"
        finally:
            if self.shell == "after":
                self.open_shell("after its cycles" if error is None else f"after: {error}")
            if not self.needs_reboot:
                self._close_held(everything=True)
                self.teardown_fixtures()
        return error, (slab_first, slab_last)

    def _check_blocked(self, host_deadline: float) -> None:
        """Tasks the item left stuck in the kernel end the boot, with stacks; stuck as long
        as the hung-task detector allows, they are a hang the item caused."""
        hang, report_by = blocked.hung_window()
        settled = blocked.settle(min(report_by, max(0.0, host_deadline - time.monotonic())))
        if not settled.stuck:
            return
        self.needs_reboot = True
        names = ", ".join(f"{t.comm} (pid {t.tid})" for t in settled.stuck)
        if settled.reported or settled.waited >= hang:
            self.violate(
                f"tasks stayed blocked (state D, no context switch) for {settled.waited:.0f} s"
                f" after the item's teardown: {names}"
            )
            dump_blocked(f"{self.id} left tasks blocked", stuck=settled.stuck[0].tid)
        else:
            kmsg(
                f"harness: {self.id}: still blocked when the item's time ran out after"
                f" {settled.waited:.1f} s, too short to call a hang: {names}; next item reboots"
            )

    def open_shell(self, when: str) -> None:
        """The developer's shell in the state the scenario left, its fixtures' paths first.
        No deadline runs meanwhile: the host waits for the shell's end, not for a timeout."""
        if self.watchdog is not None:
            self.watchdog.cancel()
        lines = [f"harness: shell in the guest, {when} ({self.id}); `exit` tears down, powers off"]
        for spec in self.sc.fixtures:
            if (fixture := self.fixtures.get(spec.name)) is not None:
                values = ", ".join(f"{k}={v}" for k, v in fixture.values().items())
                lines.append(f"harness:   {spec.name} ({spec.type}): {values}")
        event("shell", id=self.id)
        status = shell.run("\n".join(lines) + "\n")
        event("shell-end", id=self.id, status=status)

    def _check_leaks(self, growth: int | None, fds_before: int, fds_after: int) -> None:
        """References the removals left behind: Slab growth, provider names never freed, fds."""
        limit = self.expect.max_slab_growth_kb
        if limit is not None and growth is not None and growth > limit:
            self.violate(f"Slab grew by {growth} kB from cycle 0 to the end (bound {limit} kB)")
        fd_limit = self.expect.max_fd_growth
        if fd_limit is not None and fds_after - fds_before > fd_limit and not self.needs_reboot:
            self.violate(f"runner fds grew from {fds_before} to {fds_after} (bound {fd_limit})")


def write_result(result_dir: Path, result: protocol.ItemReport) -> None:
    result_dir.mkdir(parents=True, exist_ok=True)
    target = result_dir / f"{result.id.replace('/', '_')}.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(protocol.to_json(result), indent=1))
    os.replace(tmp, target)


def decode_item(data: dict) -> protocol.PlanItem:
    """One item of the host's plan, each fixture spec as its type's class."""
    return protocol.decode(protocol.PlanItem, data, fixtures.decode_spec)


def main(argv: list[str]) -> int:
    plan = protocol.decode(
        protocol.Plan, json.loads(Path(argv[1]).read_text()), fixtures.decode_spec
    )
    result_dir = Path(plan.result_dir)
    event("ready", kernel=os.uname().release, items=len(plan.items))
    gc.disable()  # no collector pauses inside timing-sensitive loops
    previous = None
    for item in plan.items:
        if off := detectors_off_now():
            why = "; ".join(off)
            if previous is not None:  # what the last item's report did: a fresh boot undoes it
                event("needs-reboot", id=previous, why=f"{why} after {previous}")
                return 3
            # already off after the boot: a reboot gives the same, the item has no verdict
            result = ScenarioRun(item, plan.modules).unwatched(why)
            write_result(result_dir, result)
            event("end", id=item.id, violations=0, error=result.error)
            continue
        previous = item.id
        run = ScenarioRun(item, plan.modules, plan.shell)
        result = run.execute()
        write_result(result_dir, result)
        event("end", id=item.id, violations=len(result.violations), error=result.error)
        gc.collect()
        if result.needs_reboot:
            event("needs-reboot", id=item.id)
            return 3
    event("done")
    return 0


if __name__ == "__main__":  # python3 -m guest.runner PLAN.json, from the project directory
    sys.exit(main(sys.argv))

"""What every worker type shares: threads that keep using a provider while it goes away.

Each worker counts operations, errors by errno, and the longest time one
operation blocked; each thread records whether it is inside an operation, so
the runner can prove a removal came while readers were really reading.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from guest.adapters import chipmodels
from guest.protocol import WorkerSpec


class Stopped(Exception):
    """A whole-file read cut short because the cycle ended: not an operation, not an error."""


class ShortFile(Exception):
    """A whole-file read whose EOF came before the chip's end (or after it): a failed try.

    ``on_error: stop`` ends the thread, as an error would (its end_errnos say
    "short-file"). Whether it is a violation depends on whether the provider
    went away while it ran, which the runner may learn only after the op
    ended (an unplug at a point), so the worker records it and
    ``short_files()`` judges it later.
    """


class Handle:
    """An open fd (chip or line request) that several threads may share."""

    def __init__(self, fd: int, chip_fd: int | None = None):
        self.fd = fd
        self.chip_fd = chip_fd

    def close(self) -> list[str]:
        """Close everything; return close() errors (close after removal must not crash)."""
        problems = []
        for fd in (self.fd, self.chip_fd):
            if fd is None or fd < 0:
                continue
            try:
                os.close(fd)
            except OSError as exc:
                problems.append(errno.errorcode.get(exc.errno, str(exc.errno)))
        self.fd = self.chip_fd = -1
        return problems


class ThreadState:
    def __init__(self) -> None:
        self.ops = 0
        self.in_op = False
        self.alive = False
        self.end_errno: str | None = None
        self.longest = 0.0
        self.offset = 0  # read-file: where the next sequential read starts
        self.bytes = 0
        self.verified = 0  # bytes compared with the chip model (or what was written) and equal
        self.failed = 0  # operations that ended in an error (on_error: continue, reopen)
        self.tries_at_removal: int | None = None  # ops + failed when the fixture went away
        self.ops_at_removal = 0
        self.failed_at_removal = 0
        self.rng = random.Random()  # write-read-back: offsets and data, seeded per thread


class Worker:
    """One ``workers:`` entry of a scenario: N threads running the same operation.

    A worker type (one module in guest/workers/) subclasses this with what its
    op is and what its threads open; counting, errors, stopping and the proof
    of work are the same for every type.
    """

    needs_fixture = False  # the scenario must name its fixture (checked by the host's schema)
    needs_path = False  # the scenario must give its path (a file, not the fixture's chip)
    splits_lines = False  # threads get disjoint slices of ``lines`` unless share_fd
    paced = True  # ops at its own pace (an edge waiter's come with the scenario's actions)
    failed_read_is_wrong = False  # a failed op is a wrong answer, not an errno result
    path_or_fixture = False  # the scenario must give its path or its fixture
    fixture_types: tuple[str, ...] = ()  # the fixture types it works on (empty: any)
    needs_chip_model = False  # its fixture must have a chip model (it checks data against it)
    writes_fixture = False  # it changes the chip's data: readers of that fixture take its lock
    reads_in_blocks = False  # its block_size places a mid-read unplug point

    def __init__(
        self,
        spec: WorkerSpec,
        resolve: Callable[[str], str],
        fixture: Any,  # a provider.Fixture; ChipFixture, GpioFixture or JudgedFixture as used
        seed: int,
        guarded: bool = False,
    ):
        self.spec = spec
        self.guarded = guarded  # a write-read-back worker shares the fixture: take its lock
        self.name = spec.name
        self.kind = spec.type
        self.resolve = resolve
        self.fixture = fixture
        self.seed = seed
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.states: list[ThreadState] = []
        self.errors: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.handles: list[Handle] = []
        self.setup_error: str | None = None
        self.mismatches: list[int] = []  # read-file verify: offsets that differed
        self.wrong: list[str] = []  # answers the fixture judged wrong (revocable-read), first few
        self.revoked_reads = 0  # revocable-read: reads that got the revoked answer
        # whole-file reads that did not end at the chip's size: (start, end, bytes, size)
        self.short: list[tuple[float, float, int, int]] = []
        # when its provider (or one it uses) was gone: [removal began, restored or None]
        self.absent: list[list[float | None]] = []
        self.started_at = 0.0

    # --- opening -------------------------------------------------------------

    def _chip_path(self) -> str:
        if self.spec.path:
            return self.resolve(self.spec.path)
        return self.fixture.dev(self.spec.bank)

    def _file_path(self) -> str:
        pattern = self.resolve(self.spec.path)
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise FileNotFoundError(errno.ENOENT, "no file matches", pattern)
        return matches[0]

    def _line_slices(self) -> list[list[int]]:
        lines = list(self.spec.lines)
        threads = self.spec.threads
        if self.spec.share_fd or not self.splits_lines:
            return [lines] * threads
        return [lines[i::threads] for i in range(threads)]

    # --- what a type defines -------------------------------------------------

    def open_handle(self, lines: list[int]) -> Handle:
        """Open what a thread keeps using across its ops (a persistent type's)."""
        raise NotImplementedError(self.kind)

    def op(
        self, handle: Handle | None, lines: list[int], buf: bytearray, state: ThreadState
    ) -> int:
        """One operation; returns how many it counts as (an edge waiter's: events read)."""
        raise NotImplementedError(self.kind)

    def persistent(self) -> bool:
        """Whether each thread opens once (open_handle) rather than in every op."""
        return True

    def buffer_size(self) -> int:
        return 0

    # --- operations ----------------------------------------------------------

    def _reading(self):
        """The fixture's I/O lock if a write-read-back worker uses it too, else nothing.

        Without writers, readers take no lock at all, so they meet in the kernel.
        """
        return self.fixture.io_lock.held() if self.guarded else contextlib.nullcontext()

    def _check(self, buf: bytearray, offset: int, n: int, state: ThreadState) -> None:
        """Count the bytes; with ``verify``, compare them with the fixture's model."""
        state.bytes += n
        if n and self.spec.verify and self.fixture is not None:
            want = self.fixture.expected(offset, n)
            self._compare(want, bytes(buf[:n]), offset, "data differs from the model")
            state.verified += n

    def _compare(self, want: bytes, got: bytes, offset: int, what: str) -> None:
        """Record and raise (EBADMSG) the first differing byte, as a device offset."""
        at = chipmodels.first_mismatch(want, got)
        if at is None:
            return
        at += offset
        with self.lock:
            self.mismatches.append(at)
        raise OSError(errno.EBADMSG, f"{what} at byte {at}")

    def _loop(self, state: ThreadState, handle: Handle | None, lines: list[int]) -> None:
        buf = bytearray(self.buffer_size())
        interval = self.spec.interval
        on_error = self.spec.on_error
        try:
            while not self.stop_event.is_set():
                t0 = time.monotonic()
                state.in_op = True
                try:
                    state.ops += self.op(handle, lines, buf, state)
                    if self.spec.max_ops and state.ops >= self.spec.max_ops:
                        return  # its share of the work is done (data-integrity readers)
                except Stopped:
                    return
                except ShortFile:
                    state.failed += 1  # a failed try, judged by short_files() at the cycle's end
                    if on_error == "stop":  # as after an error: the runner waits for no more ops
                        state.end_errno = "short-file"
                        return
                except OSError as exc:
                    name = errno.errorcode.get(exc.errno, str(exc.errno))
                    with self.lock:
                        self.errors[name] += 1
                    state.failed += 1
                    if on_error == "stop":
                        state.end_errno = name
                        return
                    if on_error == "reopen" and handle is not None:
                        handle = self._reopen(handle, lines)
                        if handle is None:
                            time.sleep(0.05)
                finally:
                    state.in_op = False
                    state.longest = max(state.longest, time.monotonic() - t0)
                if interval:
                    self.stop_event.wait(interval)
        finally:
            state.alive = False

    def _reopen(self, old: Handle, lines: list[int]) -> Handle | None:
        old.close()
        try:
            fresh = self.open_handle(lines)
        except OSError:
            return None
        with self.lock:
            self.handles.append(fresh)
        return fresh

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Open what the threads use, then start them. An open failure is a setup error."""
        persistent = self.persistent()
        slices = self._line_slices()
        handles: list[Handle | None] = []
        try:
            if persistent and self.spec.share_fd:
                shared = self.open_handle(slices[0])
                self.handles.append(shared)
                handles = [shared] * len(slices)
            elif persistent:
                for lines in slices:
                    handle = self.open_handle(lines)
                    self.handles.append(handle)
                    handles.append(handle)
            else:
                handles = [None] * len(slices)
        except OSError as exc:
            self.setup_error = f"{self.name}: cannot open: {exc}"
            return
        self.started_at = time.monotonic()
        for index, (handle, lines) in enumerate(zip(handles, slices, strict=True)):
            state = ThreadState()
            # alive from start(), not from when the thread first runs: a trigger that
            # asks right after start() must not take a thread not yet scheduled for dead
            state.alive = True
            state.rng.seed(f"{self.seed}/{self.name}/{index}")
            self.states.append(state)
            thread = threading.Thread(
                target=self._loop,
                args=(state, handle, lines),
                name=f"{self.name}/{index}",
                daemon=True,
            )
            self.threads.append(thread)
            thread.start()

    @property
    def ops(self) -> int:
        return sum(s.ops for s in self.states)

    def alive(self) -> int:
        return sum(1 for s in self.states if s.alive)

    def longest_op(self) -> float:
        return max((s.longest for s in self.states), default=0.0)

    def in_op(self) -> int:
        return sum(1 for s in self.states if s.in_op)

    def stop(self) -> None:
        self.stop_event.set()

    def mark_removal(self, began: float) -> None:
        """Its provider (or one it uses), whose removal began at ``began``, just went away.

        Each thread's tries count from here (min_ops_after_removal), failed
        ones too: an error is the consumer being tried.
        """
        self.absent.append([began, None])
        for s in self.states:
            if s.tries_at_removal is None:
                s.tries_at_removal = s.ops + s.failed
                s.ops_at_removal, s.failed_at_removal = s.ops, s.failed

    def mark_restored(self, at: float) -> None:
        """The provider is back (at ``at``): a short whole-file read after that is a violation."""
        if self.absent and self.absent[-1][1] is None:
            self.absent[-1][1] = at

    def short_files(self) -> tuple[list[str], int]:
        """Whole-file reads that did not end at the chip's size: those made while the
        provider was present (one line each, first few), and how many a removal cut short.

        A read overlapping a removal (from its start to the provider's return) is
        the removal's doing: that is what unplug scenarios are for.
        """
        wrong, cut = [], 0
        with self.lock:
            short = list(self.short)
        for started, ended, got, size in short:
            if any(a <= ended and (b is None or b >= started) for a, b in self.absent):
                cut += 1
            else:
                wrong.append(f"{got} of {size} bytes")
        return wrong, cut

    def after_removal(self) -> list[dict]:
        """Per thread, the ops done and failed since its provider first went away this cycle."""
        return [
            {"ops": s.ops - s.ops_at_removal, "failed": s.failed - s.failed_at_removal}
            for s in self.states
            if s.tries_at_removal is not None
        ]

    def short_after_removal(self, alive_only: bool = False) -> list[str]:
        """Threads that have not tried min_ops_after_removal since the removal ("name/i: n")."""
        need = self.spec.min_ops_after_removal
        return [
            f"{self.name}/{i}: {s.ops + s.failed - s.tries_at_removal}"
            for i, s in enumerate(self.states)
            if need
            and s.tries_at_removal is not None
            and s.ops + s.failed - s.tries_at_removal < need
            and (s.alive or not alive_only)
        ]

    def join(self, timeout: float) -> list[str]:
        """Wait for all threads; return the names of threads still blocked."""
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in self.running()]

    def running(self) -> list[threading.Thread]:
        """The threads that have not returned (their kernel stacks name where they wait)."""
        return [t for t in self.threads if t.is_alive()]

    def snapshot(self) -> dict:
        return {
            "ops": self.ops,
            "alive_threads": self.alive(),
            "threads_in_op": self.in_op(),
            "bytes": sum(s.bytes for s in self.states),
        }

    def stats(self) -> dict:
        return {
            "type": self.kind,
            "threads": len(self.states),
            "ops": self.ops,
            "errors": dict(self.errors),
            "end_errnos": dict(Counter(s.end_errno for s in self.states if s.end_errno)),
            "longest_op_s": round(self.longest_op(), 4),
            "bytes": sum(s.bytes for s in self.states),
            "bytes_verified": sum(s.verified for s in self.states),
            "mismatches": self.mismatches[:10],
            "wrong": self.wrong[:10],
            "revoked_reads": self.revoked_reads,
            "setup_error": self.setup_error,
        }

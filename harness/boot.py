"""Boot a built kernel under virtme-ng and follow the guest runner's events.

The whole serial console (kernel log, guest runner events, anything the
guest prints) is written to a log file as it arrives and scanned for
``harness-event {json}`` lines. QEMU runs in its own process group and is
killed on every way out (timeout, crash, Ctrl-C), so no guest outlives the
harness.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pexpect
import pexpect.fdpexpect

from harness.accel import Accel

EVENT = re.compile(rb"harness-event (\{.*?\})\s*\r?\n")
# Always on the command line: print every level, reboot (= QEMU exits) on panic,
# report a hung task after 20 s (the config default, restated so a user fragment cannot lengthen it).
BASE_CMDLINE = ("ignore_loglevel", "panic=-1", "hung_task_timeout_secs=20")


@dataclass(frozen=True)
class BootSpec:
    kernel_image: Path
    accel: Accel
    cmdline: tuple[str, ...]
    command: str  # what the guest runs
    rwdirs: tuple[Path, ...]
    memory: str = "2G"
    cpus: int = 2

    def vng_args(self) -> list[str]:
        vng = str(Path(sys.executable).parent / "vng")
        if not Path(vng).exists():
            vng = "vng"
        args = [vng, "--verbose", "--force-9p", "--memory", self.memory, "--cpus", str(self.cpus)]
        if self.accel.name == "tcg":
            args.append("--disable-kvm")
        for rw in self.rwdirs:
            args.append(f"--rwdir={rw}")
        append = " ".join((*BASE_CMDLINE, *self.cmdline))
        args += ["--append", append, "--run", str(self.kernel_image), "--exec", self.command]
        return args

    def qemu_command(self) -> str:
        """The QEMU command line vng would run (for the results and for reproduction)."""
        try:
            out = subprocess.run(
                [*self.vng_args(), "--dry-run"], capture_output=True, text=True, timeout=60,
                env=_vng_env(),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"(vng --dry-run failed: {exc})"
        lines = [ln for ln in out.stdout.splitlines() if "qemu-system" in ln]
        return lines[-1].strip() if lines else f"(vng --dry-run printed no command: {out.stderr[-300:]})"


def _vng_env() -> dict[str, str]:
    env = dict(os.environ)
    # vng calls virtme-run by name: make the venv's scripts visible.
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


@dataclass
class GuestEvent:
    kind: str
    fields: dict


@dataclass
class Guest:
    """A running VM. Iterate ``events(deadline_fn)``; always ``stop()``."""

    spec: BootSpec
    console_path: Path
    proc: subprocess.Popen | None = None
    started: float = 0.0
    ended_reason: str = ""
    _reader: pexpect.fdpexpect.fdspawn | None = field(default=None, repr=False)
    _console: object = field(default=None, repr=False)

    def start(self) -> None:
        self.console_path.parent.mkdir(parents=True, exist_ok=True)
        self._console = self.console_path.open("wb")
        self._console.write(f"# {shlex.join(self.spec.vng_args())}\n".encode())
        self._console.flush()
        self.proc = subprocess.Popen(
            self.spec.vng_args(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, env=_vng_env(),
        )
        self._reader = pexpect.fdpexpect.fdspawn(self.proc.stdout.fileno(), timeout=None)
        self.started = time.monotonic()

    def events(self, deadline: Callable[[], float]) -> Iterator[GuestEvent]:
        """Yield events until the guest exits or ``deadline()`` (monotonic) passes.

        The deadline is re-read after every event: it moves as scenarios start.

        On return, ``ended_reason`` is 'exit' or 'timeout'.
        """
        assert self._reader is not None
        while True:
            remaining = deadline() - time.monotonic()
            if remaining <= 0:
                self.ended_reason = "timeout"
                return
            index = self._reader.expect([EVENT, pexpect.EOF, pexpect.TIMEOUT], timeout=min(remaining, 5))
            self._log(self._reader.before)
            if index == 0:
                self._log(self._reader.after)
                try:
                    payload = json.loads(self._reader.match.group(1))
                except json.JSONDecodeError:
                    continue
                yield GuestEvent(payload.pop("event", "?"), payload)
            elif index == 1:
                self.ended_reason = "exit"
                return

    def _log(self, data) -> None:
        if isinstance(data, bytes) and data:
            self._console.write(data)
            self._console.flush()

    def stop(self) -> int | None:
        """Kill QEMU (if still running) and its helpers; return vng's exit code."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            code = self.proc.wait()
            if self._reader is not None:
                try:
                    rest = self.proc.stdout.read()
                except (OSError, ValueError):
                    rest = b""
                self._log(rest)
                self.proc.stdout.close()
            self.proc = None
        if self._console is not None:
            self._console.close()
            self._console = None
        return code

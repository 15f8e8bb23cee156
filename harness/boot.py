"""Boot a built kernel under virtme-ng and follow the guest runner's events.

The whole serial console (kernel log, guest runner events, anything the
guest prints) is written to a log file as it arrives and scanned for
``harness-event {json}`` lines. QEMU runs in its own process group and is
killed on every way out (timeout, crash, Ctrl-C), so no guest outlives the
harness.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import termios
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pexpect
import pexpect.fdpexpect

from harness import paths
from harness.accel import (
    BANNER,
    KVM_FAILED,
    QEMU,
    Accel,
    firmware_args,
    guest_cmdline,
    machine_args,
)

LINE = re.compile(rb"[^\n]*\n")
# A printk record on the console: the kernel itself is running (not just firmware).
KERNEL_LINE = re.compile(rb"^\[\s*\d+\.\d{6}\]")
# Reports after which a guest may never report again (the task that hit it died,
# possibly the runner's own thread, possibly holding locks).
FATAL_LINE = re.compile(
    rb"BUG: KASAN: |Oops: |general protection fault|BUG: unable to handle"
    rb"|Kernel panic - not syncing|BUG: soft lockup|BUG: spinlock "
    rb"|rcu: INFO: \w+ (?:detected (?:expedited )?stalls|self-detected stall)"
)
EVENT = re.compile(rb"harness-event (\{.*\})\s*$")
# Always on the command line: print every level, reboot (= QEMU exits) on panic,
# report a hung task after 20 s (the config default, restated so that a user
# fragment cannot lengthen it).
BASE_CMDLINE = (
    "ignore_loglevel",
    "panic=-1",
    "sysctl.kernel.hung_task_timeout_secs=20",
    # every hung task is reported, not only the first 10 of a boot (the default)
    "sysctl.kernel.hung_task_warnings=-1",
)
# KASAN stays one-shot (no kasan_multi_shot): after its first report the kernel goes on
# with the freed object and multi-shot reports every later touch of it, interleaved, so
# which report comes first and how each is titled is chance. Instead the guest runner
# never starts an item in a boot whose KASAN has fired (taint B): every item gets a
# KASAN that still reports (guest/runner.py detectors_off).
# A second serial port (ttyS1) for sysrq from the host: a helper process of the guest's
# init (not the runner) turns the keys it reads into /proc/sysrq-trigger writes, so the
# stacks of blocked tasks come out even when the guest runner is stuck.
SYSRQ_CHARDEV = "harness-sysrq"
SYSRQ_PORT = "ttyS1"


class BootError(Exception):
    """virtme-ng could not produce a QEMU command line."""


@dataclass(frozen=True)
class BootSpec:
    kernel_image: Path
    accel: Accel
    cmdline: tuple[str, ...]
    plan: Path | None  # the guest runner's plan; None boots to `exec_command` under virtme-ng-init
    rwdirs: tuple[Path, ...]
    memory: str = "1G"
    cpus: int = 2
    exec_command: str = "true"
    interactive: bool = False  # the console takes input (`harness run --shell`)

    def vng_args(self, rwdirs: tuple[Path, ...] | None = None) -> list[str]:
        vng = str(Path(sys.executable).parent / "vng")
        if not Path(vng).exists():
            vng = "vng"
        args = [vng, "--verbose", "--force-9p", "--memory", self.memory, "--cpus", str(self.cpus)]
        if self.accel.name == "tcg":
            args.append("--disable-kvm")
        for rw in self.rwdirs if rwdirs is None else rwdirs:
            args.append(f"--rwdir={rw}")
        append = " ".join((*BASE_CMDLINE, *self.cmdline))
        args += ["--append", append, "--run", str(self.kernel_image), "--exec", self.exec_command]
        return args

    def qemu_argv(self, control: Path | None = None) -> list[str]:
        """virtme-ng's QEMU command, with the harness's PID 1 instead of virtme-ng-init.

        virtme-ng decides devices, root filesystem and console; the init swap
        saves ~7 s per boot under TCG (see guest/init.py). With ``control`` (a
        short directory: unix socket paths are limited to 108 bytes) QEMU also
        gets the sysrq serial port's socket there.
        """
        if self.plan is None:
            argv = shlex.split(vng_dry_run(self.vng_args()))
            if self.accel.name == "kvm":
                # vng asks for accel=kvm:tcg; a boot the harness runs as KVM must not
                # silently become a TCG boot held to KVM's timeouts
                argv = [a.replace("accel=kvm:tcg", "accel=kvm") for a in argv]
            return argv if "-bios" in argv else argv + firmware_args()
        argv = on_microvm(without_unused_devices(self._cached_vng_argv()), self.accel.name)
        index = argv.index("-append") + 1
        words = [w for w in argv[index].split() if not w.startswith(("init=", "virtme.exec="))]
        init = paths.GUEST_DIR / "init.py"
        extra = [*guest_cmdline(self.accel.name), f"harness_plan={self.plan}", ROOTFLAGS]
        if (packed := guest_zip()) is not None:
            extra.append(f"harness_zip={packed}")
        if control is not None:
            extra.append(f"harness_sysrq_port={SYSRQ_PORT}")
            argv += [
                "-chardev",
                f"socket,id={SYSRQ_CHARDEV},path={control / 'sysrq.sock'},server=on,wait=off",
                "-device",  # microvm instantiates one ISA port itself, for -serial's first
                f"isa-serial,index=1,chardev={SYSRQ_CHARDEV}",
            ]
        argv[index] = " ".join([*words, *extra, f"init={init}"])
        return with_console_input(argv) if self.interactive else argv

    def _cached_vng_argv(self) -> list[str]:
        """vng's QEMU command for this spec, from the cache when vng already gave it once.

        vng --dry-run costs 0.22 s of every boot and its answer depends only on
        its arguments, its version, the working directory and the kernel image;
        the one part that changes from boot to boot, the --rwdir paths, is
        asked with fixed placeholder directories and substituted per argument.
        """
        holders = tuple(
            paths.cache_dir() / "vng" / f"rwdir-{n}.placeholder" for n in range(len(self.rwdirs))
        )
        for holder in holders:
            holder.mkdir(parents=True, exist_ok=True)
        args = self.vng_args(holders)
        image = self.kernel_image.stat()
        key = json.dumps(
            [
                args,
                os.getcwd(),
                image.st_mtime_ns,
                image.st_size,
                _vng_version(),
                shutil.which(QEMU),
            ]
        )
        cached = paths.cache_dir() / "vng" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.cmd"
        try:
            line = cached.read_text()
        except OSError:
            line = vng_dry_run(args)
            paths.atomic_write(cached, line)
        argv = shlex.split(line)
        for holder, real in zip(holders, self.rwdirs, strict=True):
            # vng writes a share both as a path and without its leading slash
            argv = [a.replace(str(holder).lstrip("/"), str(real).lstrip("/")) for a in argv]
        return argv


def _vng_version() -> str:
    try:
        return importlib.metadata.version("virtme-ng")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def vng_dry_run(args: list[str]) -> str:
    """The QEMU command line ``vng ARGS --dry-run`` prints (shell-quoted)."""
    try:
        out = subprocess.run(
            [*args, "--dry-run"], capture_output=True, text=True, timeout=120, env=_vng_env()
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BootError(f"vng --dry-run failed: {exc}") from exc
    lines = [ln for ln in out.stdout.splitlines() if "qemu-system" in ln]
    if not lines:
        raise BootError(
            f"vng --dry-run printed no QEMU command:\n{out.stdout[-500:]}{out.stderr[-1000:]}"
        )
    return lines[-1]


# PCI devices virtme-ng adds for its own init (script I/O over virtio-serial ports, a
# watchdog) that the harness guest never opens: each costs PCI/ACPI enumeration and a
# driver probe at every boot (virtio_pci_driver_init took 0.47 s of a 3.5 s kernel boot
# under TCG with them, measured with initcall_debug).
UNUSED_DEVICES = ("virtio-serial-pci", "virtserialport", "i6300esb")


def _qemu_options(value: str) -> tuple[str, dict[str, str]]:
    """'virtserialport,name=x,chardev=y' -> ('virtserialport', {'name': 'x', 'chardev': 'y'})."""
    kind, *options = value.split(",")
    return kind, dict(o.partition("=")[::2] for o in options)


def _without(argv: list[str], flag: str, drop: Callable[[str, dict[str, str]], bool]) -> list[str]:
    """``argv`` without each ``flag VALUE`` pair whose parsed VALUE ``drop`` accepts."""
    out: list[str] = []
    words = iter(argv)
    for word in words:
        if word == flag:
            value = next(words, "")
            if not drop(*_qemu_options(value)):
                out += [word, value]
        else:
            out.append(word)
    return out


def without_unused_devices(argv: list[str]) -> list[str]:
    """``argv`` without UNUSED_DEVICES and the chardevs only they used (stdin among them)."""
    unused = [
        options
        for flag, value in zip(argv, argv[1:], strict=False)
        if flag == "-device"
        for kind, options in [_qemu_options(value)]
        if kind in UNUSED_DEVICES
    ]
    chardevs = {options["chardev"] for options in unused if "chardev" in options}
    kept = _without(argv, "-device", lambda kind, options: kind in UNUSED_DEVICES)
    return _without(kept, "-chardev", lambda kind, options: options.get("id") in chardevs)


SHELL_END = re.compile(rb'harness-event \{"event":"shell-end"[^\n]*\n')


def _until_shell_end(line: bytes, data: bytes) -> tuple[bytes, bytes | None, bytes]:
    """Console bytes ``data`` after ``line`` (the unfinished line already passed on): what
    to pass on, up to and with the guest's shell-end event; what follows that event (None:
    the shell goes on); and the unfinished line after ``data``."""
    joined = line + data
    found = SHELL_END.search(joined)
    if found is None:
        return data, None, joined[joined.rfind(b"\n") + 1 :]
    return joined[len(line) : found.end()], joined[found.end() :], b""


def with_console_input(argv: list[str]) -> list[str]:
    """The serial console on QEMU's stdin and stdout instead of output-only (virtme-ng
    writes it to a file): the guest's ttyS0 reads what the host passes on."""
    out = _without(argv, "-chardev", lambda kind, options: options.get("id") == "console")
    return [*out, "-chardev", "stdio,id=console,signal=off"]


def on_microvm(argv: list[str], accel: str) -> list[str]:
    """virtme-ng's q35 (or default) machine swapped for MACHINE, its 9p shares moved to MMIO."""
    argv = _without(argv, "-machine", lambda kind, options: True)
    argv = _without(argv, "-bios", lambda kind, options: True)  # microvm's own is qboot
    devices = [
        "virtio-9p-device" + value[len("virtio-9p-pci") :]
        if value.startswith("virtio-9p-pci,")
        else value
        for value in argv
    ]
    return [*devices, *machine_args(accel)]


GUEST_PYTHON = "/usr/bin/python3"
# The guest's root is the host's / over 9p, read-only. cache=loose lets the
# guest page-cache it: Python's first start drops from ~5 s to ~1.5 s under TCG
# (every page fault was a 9p round trip). Safe here: the guest never writes
# the root and the host does not change it during a boot; results travel over
# the separate --rwdir share, which keeps virtme-ng's uncached options.
ROOTFLAGS = "rootflags=version=9p2000.L,trans=virtio,access=any,msize=524288,cache=loose"


def guest_zip() -> Path | None:
    """The guest's modules as one zip (see guest/init.py), built once per guest code version."""
    sources = sorted(paths.GUEST_DIR.rglob("*.py"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    target = paths.cache_dir() / "guest" / f"guest-{digest}.zip"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")  # other runs may read target
    try:
        subprocess.run(
            [GUEST_PYTHON, "-IS", str(paths.GUEST_DIR / "pack.py"), str(partial)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        os.replace(partial, target)
    except (OSError, subprocess.SubprocessError):
        return None  # the guest then imports from the root filesystem, only slower
    return target


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
    command: str = ""
    kernel_output: bool = False  # a printk line arrived (firmware output does not count)
    kvm_failure: str = ""  # QEMU's message if KVM failed under the guest
    fatal_at: float = 0.0  # monotonic time of the first KASAN/Oops/panic line, 0 if none
    control: Path | None = None  # the sysrq port's socket (plan boots)
    _reader: pexpect.fdpexpect.fdspawn | None = field(default=None, repr=False)
    _console: object = field(default=None, repr=False)

    def start(self) -> None:
        self.console_path.parent.mkdir(parents=True, exist_ok=True)
        self._console = self.console_path.open("wb")
        if self.spec.plan is not None:
            self.control = Path(tempfile.mkdtemp(prefix="harness-qemu-"))
        argv = self.spec.qemu_argv(self.control)
        self.command = shlex.join(argv)
        self._console.write(f"# {self.command}\n".encode())
        self._console.flush()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if self.spec.interactive else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=_vng_env(),
        )
        self._reader = pexpect.fdpexpect.fdspawn(
            self.proc.stdout.fileno(), timeout=None, maxread=65536
        )
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
            index = self._reader.expect(
                [LINE, pexpect.EOF, pexpect.TIMEOUT], timeout=min(remaining, 5)
            )
            if index == 0:
                line = self._reader.after
                self._log(line)
                self._scan(line)
                match = EVENT.search(line)
                if not match:
                    continue
                try:
                    payload = json.loads(match.group(1))
                except json.JSONDecodeError:
                    continue
                yield GuestEvent(payload.pop("event", "?"), payload)
            elif index == 1:
                self._log(self._reader.before)
                rest = self._reader.before if isinstance(self._reader.before, bytes) else b""
                for tail_line in rest.splitlines():  # QEMU's last words may lack a newline
                    self._scan(tail_line)
                self.ended_reason = "exit"
                return

    def interact(self) -> float:
        """Pass the host's terminal to the guest's console until the guest's shell ends
        (its ``shell-end`` event) or QEMU exits; the seconds it took.

        The terminal is raw meanwhile, so Ctrl-C and line editing belong to the
        guest's shell; the console log keeps everything that came out.
        """
        assert self._reader is not None and self.proc is not None and self.proc.stdin
        began = time.monotonic()
        keyboard = sys.stdin.fileno()
        saved = termios.tcgetattr(keyboard) if os.isatty(keyboard) else None
        if saved is not None:
            tty.setraw(keyboard)
        console = self.proc.stdout.fileno()
        data, self._reader.buffer = self._reader.buffer, b""
        sources, line = [keyboard, console], b""
        try:
            while True:
                data, ended, line = _until_shell_end(line, data)
                self._log(data)
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
                if ended is not None:
                    self._reader.buffer = ended  # read on as events
                    break
                ready, _, _ = select.select(sources, [], [])
                if keyboard in ready:
                    typed = os.read(keyboard, 1024)
                    if not typed:  # the host's input ended: leave the shell for it
                        sources.remove(keyboard)
                        typed = b"\nexit\n"
                    self.proc.stdin.write(typed)
                    self.proc.stdin.flush()
                data = os.read(console, 65536) if console in ready else b""
                if console in ready and not data:
                    break  # QEMU exited; events() sees the end of file
        finally:
            if saved is not None:
                termios.tcsetattr(keyboard, termios.TCSADRAIN, saved)
        return time.monotonic() - began

    def _scan(self, line: bytes) -> None:
        """What the runner watches for: kernel output at all, a fatal report, KVM failing."""
        if not self.kernel_output and (KERNEL_LINE.match(line) or BANNER.search(line)):
            self.kernel_output = True
        if not self.fatal_at and FATAL_LINE.search(line):
            self.fatal_at = time.monotonic()
        if not self.kvm_failure and KVM_FAILED.search(line):
            self.kvm_failure = line.decode(errors="replace").strip()

    def _log(self, data) -> None:
        if isinstance(data, bytes) and data:
            self._console.write(data)
            self._console.flush()

    def request_stacks(self, reason: str, quiet: float = 3.0, bound: float = 20.0) -> bool:
        """sysrq w from the host, then the console until it has been quiet for ``quiet`` s.

        For a guest whose runner stopped reporting: init's sysrq helper still
        answers on the sysrq port, and the blocked tasks' stacks land in the
        log before the guest is killed.
        """
        if self.control is None or self.proc is None or self.proc.poll() is not None:
            return False
        note = f"harness-host: {reason}; sysrq w: stacks of blocked tasks follow\n"
        self._log(note.encode())
        try:
            with socket.socket(socket.AF_UNIX) as port:
                port.settimeout(5.0)
                port.connect(str(self.control / "sysrq.sock"))
                port.sendall(b"w")
                self._follow(quiet, bound)
        except OSError as exc:
            self._log(f"harness-host: sysrq failed: {exc}\n".encode())
            return False
        return True

    def _follow(self, quiet: float, bound: float) -> None:
        """Log console output until none came for ``quiet`` s (at most ``bound`` s)."""
        assert self._reader is not None
        end = time.monotonic() + bound
        while time.monotonic() < end:
            index = self._reader.expect([LINE, pexpect.EOF, pexpect.TIMEOUT], timeout=quiet)
            if index == 0:
                self._log(self._reader.after)
                self._scan(self._reader.after)
            else:
                if index == 1:
                    self._log(self._reader.before)
                return

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
        if self.control is not None:
            shutil.rmtree(self.control, ignore_errors=True)
            self.control = None
        return code

"""USB gadget plumbing: a configfs gadget with one FunctionFS function, plugged into a UDC.

The emulated adapter is a user-space USB device: configfs describes it
(Documentation/usb/gadget_configfs.rst), FunctionFS carries its descriptors
and endpoints (Documentation/usb/functionfs.rst, include/uapi/linux/usb/
functionfs.h), and writing a UDC name (dummy_udc.0 with dummy_hcd) plugs it
into the guest's own USB host, where the real kernel driver binds.

Descriptor and string blobs are built by pure functions so tests can check
them byte by byte. A thread reads ep0 events; SETUP requests go to a callback
as a ``ControlTransfer`` that must be answered exactly once (reply, receive,
ack or stall), which is what HID GET_REPORT/SET_REPORT on ep0 needs.

Endpoint files are read and written with raw libc calls: a read on a FunctionFS
endpoint blocks in the kernel until the host configures the device, and only a
signal gets a thread out of there (os.read would retry on EINTR, PEP 475).
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guest.waits import poll

CONFIGFS_GADGETS = Path("/sys/kernel/config/usb_gadget")
UDC_CLASS = Path("/sys/class/udc")
LANGUAGE_EN_US = 0x0409

USB_DT_INTERFACE = 0x04
USB_DT_ENDPOINT = 0x05
HID_DT_HID = 0x21
HID_DT_REPORT = 0x22
USB_DIR_IN = 0x80
USB_CLASS_HID = 0x03
USB_CLASS_VENDOR_SPEC = 0xFF
XFER_BULK = 0x02
XFER_INT = 0x03

FUNCTIONFS_DESCRIPTORS_MAGIC_V2 = 3
FUNCTIONFS_STRINGS_MAGIC = 2
FUNCTIONFS_HAS_FS_DESC = 1
FUNCTIONFS_HAS_HS_DESC = 2

EVENT_NAMES = ("BIND", "UNBIND", "ENABLE", "DISABLE", "SETUP", "SUSPEND", "RESUME")
EVENT = struct.Struct("<BBHHHB3x")  # struct usb_functionfs_event: usb_ctrlrequest, type, pad
EVENT_SIZE = EVENT.size  # 12

MNT_DETACH = 2
EL2HLT = errno.EL2HLT  # what FunctionFS returns after it stalled ep0 for us

_libc = ctypes.CDLL(None, use_errno=True)
_libc.read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
_libc.read.restype = ctypes.c_ssize_t
_libc.write.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
_libc.write.restype = ctypes.c_ssize_t
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class GadgetError(Exception):
    """A gadget step failed; the message names the step and the errno."""


# --- descriptors -------------------------------------------------------------------


def interface_descriptor(
    number: int,
    endpoints: int,
    cls: int,
    subclass: int = 0,
    protocol: int = 0,
    string: int = 0,
    alternate: int = 0,
) -> bytes:
    """struct usb_interface_descriptor (9 bytes); ``string`` is the iInterface index."""
    return struct.pack(
        "<9B", 9, USB_DT_INTERFACE, number, alternate, endpoints, cls, subclass, protocol, string
    )


def endpoint_descriptor(address: int, transfer: int, max_packet: int, interval: int = 0) -> bytes:
    """struct usb_endpoint_descriptor_no_audio (7 bytes); bit 7 of ``address`` = IN."""
    return struct.pack("<BBBBHB", 7, USB_DT_ENDPOINT, address, transfer, max_packet, interval)


def hid_descriptor(report_length: int, country: int = 0, bcd_hid: int = 0x0111) -> bytes:
    """HID class descriptor with one report descriptor (9 bytes, what f_fs accepts)."""
    return struct.pack("<BBHBBBH", 9, HID_DT_HID, bcd_hid, country, 1, HID_DT_REPORT, report_length)


def descriptors_blob(fs: Sequence[bytes], hs: Sequence[bytes]) -> bytes:
    """The v2 descriptor block for ep0: header, counts for the speeds present, descriptors."""
    if not fs and not hs:
        raise ValueError("no descriptors for any speed")
    flags = (FUNCTIONFS_HAS_FS_DESC if fs else 0) | (FUNCTIONFS_HAS_HS_DESC if hs else 0)
    counts = [len(d) for d in (fs, hs) if d]
    body = b"".join(fs) + b"".join(hs)
    length = 12 + 4 * len(counts) + len(body)
    return (
        struct.pack("<III", FUNCTIONFS_DESCRIPTORS_MAGIC_V2, length, flags)
        + struct.pack(f"<{len(counts)}I", *counts)
        + body
    )


def strings_blob(strings: Sequence[str], language: int = LANGUAGE_EN_US) -> bytes:
    """The strings block for ep0: one language, NUL-terminated UTF-8 strings (index 1..N)."""
    if not strings:
        return struct.pack("<IIII", FUNCTIONFS_STRINGS_MAGIC, 16, 0, 0)
    body = struct.pack("<H", language) + b"".join(s.encode() + b"\0" for s in strings)
    return struct.pack("<IIII", FUNCTIONFS_STRINGS_MAGIC, 16 + len(body), len(strings), 1) + body


@dataclass(frozen=True)
class ControlSetup:
    """struct usb_ctrlrequest as FunctionFS reports it (wIndex already mapped to our numbers)."""

    request_type: int
    request: int
    value: int
    index: int
    length: int

    @property
    def is_in(self) -> bool:
        return bool(self.request_type & USB_DIR_IN)


def parse_events(buf: bytes) -> list[tuple[str, ControlSetup | None]]:
    """Split an ep0 read into (event name, setup packet for SETUP events)."""
    events = []
    for offset in range(0, len(buf) - EVENT_SIZE + 1, EVENT_SIZE):
        rtype, req, value, index, length, kind = EVENT.unpack_from(buf, offset)
        name = EVENT_NAMES[kind] if kind < len(EVENT_NAMES) else f"UNKNOWN-{kind}"
        setup = ControlSetup(rtype, req, value, index, length) if name == "SETUP" else None
        events.append((name, setup))
    return events


class ControlTransfer:
    """One SETUP the function must finish: reply (IN), receive or ack (OUT), or stall.

    FunctionFS semantics (f_fs.c ffs_ep0_read/ffs_ep0_write): for an IN request a
    write is the data stage and a read stalls; for an OUT request a read is the
    data stage (a 0-byte read is the status stage when wLength is 0) and a
    write stalls. A stall comes back as EL2HLT.
    """

    def __init__(
        self, setup: ControlSetup, read: Callable[[int], bytes], write: Callable[[bytes], int]
    ):
        self.setup = setup
        self._read = read
        self._write = write
        self.outcome: str | None = None

    def _finish(self, outcome: str) -> None:
        if self.outcome is not None:
            raise GadgetError(f"control request already answered ({self.outcome})")
        self.outcome = outcome

    def reply(self, data: bytes) -> None:
        if not self.setup.is_in:
            raise GadgetError("reply() to an OUT control request")
        self._finish("reply")
        self._write(bytes(data[: self.setup.length]))

    def receive(self) -> bytes:
        if self.setup.is_in:
            raise GadgetError("receive() on an IN control request")
        self._finish("receive")
        return self._read(self.setup.length)

    def ack(self) -> None:
        if self.setup.is_in or self.setup.length:
            raise GadgetError("ack() is for OUT requests without a data stage")
        self._finish("ack")
        self._read(0)

    def stall(self) -> None:
        self._finish("stall")
        try:
            if self.setup.is_in:
                self._read(0)
            else:
                self._write(b"")
        except OSError as exc:
            if exc.errno != EL2HLT:
                raise


SetupHandler = Callable[[ControlTransfer], None]
EventHandler = Callable[[str], None]


# --- endpoints and thread wake-up ----------------------------------------------------

WAKE_SIGNAL = signal.SIGRTMIN + 2


def _wake(signum, frame) -> None:
    """Does nothing: the point of the signal is the EINTR in the thread it was sent to."""


def install_wake_handler() -> bool:
    """Install the no-op handler that lets ``interrupt()`` break blocking endpoint I/O.

    Python handlers can only be installed from the main thread; without one,
    sending the signal would kill the process, so ``interrupt()`` refuses.
    """
    if signal.getsignal(WAKE_SIGNAL) is _wake:
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(WAKE_SIGNAL, _wake)
    return True


def interrupt(thread: threading.Thread) -> bool:
    """Make a blocking ``Endpoint`` call in ``thread`` fail with EINTR (False if impossible)."""
    if signal.getsignal(WAKE_SIGNAL) is not _wake or thread.ident is None:
        return False
    try:
        signal.pthread_kill(thread.ident, WAKE_SIGNAL)
    except ProcessLookupError:
        return False
    return True


class Endpoint:
    """A FunctionFS endpoint file with a preallocated read buffer and interruptible I/O."""

    def __init__(self, fd: int, buffer_size: int = 4096):
        self.fd = fd
        self.buf = bytearray(buffer_size)
        self._cbuf = (ctypes.c_char * buffer_size).from_buffer(self.buf)
        self._addr = ctypes.addressof(self._cbuf)
        self.view = memoryview(self.buf)

    @classmethod
    def open(cls, path: Path, buffer_size: int = 4096) -> Endpoint:
        return cls(os.open(path, os.O_RDWR), buffer_size)

    def read(self, size: int) -> int:
        """Read up to ``size`` bytes into ``buf``; return the count. Raises OSError (EINTR too)."""
        count = _libc.read(self.fd, self._addr, min(size, len(self.buf)))
        if count < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return count

    def write(self, data: bytes) -> int:
        count = _libc.write(self.fd, data, len(data))
        if count < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return count

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# --- the gadget ----------------------------------------------------------------------


@dataclass
class GadgetConfig:
    """What the host sees of the device, plus the FunctionFS blobs for ep0."""

    name: str  # configfs directory and FunctionFS instance name
    vendor_id: int
    product_id: int
    manufacturer: str
    product: str
    serial: str
    descriptors: bytes
    strings: bytes
    endpoints: int  # ep files FunctionFS creates: ep1..epN in descriptor order
    bcd_device: int = 0x0100
    max_speed: str = "high-speed"
    max_power_ma: int = 100
    mount_dir: Path | None = None  # default /dev/ffs-<name>


def _write(path: Path, value: str) -> None:
    path.write_text(value)


class FfsGadget:
    """One configfs gadget with one FunctionFS function; ``plug``/``unplug`` bind the UDC.

    Lifecycle: ``create()`` (configfs tree, mount, descriptors, endpoint files,
    ep0 thread), then any number of ``plug()``/``unplug()``, then ``destroy()``.
    """

    def __init__(
        self,
        config: GadgetConfig,
        udc: str,
        on_setup: SetupHandler | None = None,
        on_event: EventHandler | None = None,
        root: Path = CONFIGFS_GADGETS,
    ):
        self.config = config
        self.udc = udc
        self.on_setup = on_setup
        self.on_event = on_event
        self.dir = root / config.name
        self.function = f"ffs.{config.name}"
        self.mount_dir = config.mount_dir or Path("/dev") / f"ffs-{config.name}"
        self.ep0 = -1
        self.endpoints: list[Endpoint] = []
        self.events: Counter[str] = Counter()
        self.enabled = threading.Event()
        self.problems: list[str] = []
        self._mounted = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- configfs tree -------------------------------------------------------------

    def build_tree(self) -> None:
        """Gadget directory, ids, strings, one config with the FunctionFS function linked in."""
        c = self.config
        if not self.dir.parent.is_dir():
            raise GadgetError(f"{self.dir.parent} missing: libcomposite/configfs not available")
        self.dir.mkdir()
        _write(self.dir / "idVendor", f"{c.vendor_id:#06x}")
        _write(self.dir / "idProduct", f"{c.product_id:#06x}")
        _write(self.dir / "bcdDevice", f"{c.bcd_device:#06x}")
        _write(self.dir / "max_speed", c.max_speed)
        strings = self.dir / "strings" / f"{LANGUAGE_EN_US:#x}"
        strings.mkdir(parents=True, exist_ok=True)
        _write(strings / "manufacturer", c.manufacturer)
        _write(strings / "product", c.product)
        _write(strings / "serialnumber", c.serial)
        config = self.dir / "configs" / "c.1"
        (config / "strings" / f"{LANGUAGE_EN_US:#x}").mkdir(parents=True, exist_ok=True)
        _write(config / "strings" / f"{LANGUAGE_EN_US:#x}" / "configuration", c.product)
        _write(config / "MaxPower", str(c.max_power_ma))
        function = self.dir / "functions" / self.function
        function.mkdir(parents=True, exist_ok=True)
        (config / self.function).symlink_to(function)

    def _remove_tree(self) -> None:
        lang = f"{LANGUAGE_EN_US:#x}"
        config = self.dir / "configs" / "c.1"
        steps = (
            (config / self.function).unlink,
            (config / "strings" / lang).rmdir,
            config.rmdir,
            (self.dir / "functions" / self.function).rmdir,
            (self.dir / "strings" / lang).rmdir,
            self.dir.rmdir,
        )
        for step in steps:
            try:
                step()
            except FileNotFoundError:
                pass
            except OSError as exc:
                self.problems.append(f"teardown: {exc}")

    # --- FunctionFS ----------------------------------------------------------------

    def _mount(self) -> None:
        self.mount_dir.mkdir(parents=True, exist_ok=True)
        name = self.config.name.encode()
        if _libc.mount(name, str(self.mount_dir).encode(), b"functionfs", 0, None) != 0:
            err = ctypes.get_errno()
            raise GadgetError(
                f"mount functionfs {self.config.name} on {self.mount_dir}: {os.strerror(err)}"
            )
        self._mounted = True

    def _umount(self) -> None:
        if not self._mounted:
            return
        target = str(self.mount_dir).encode()
        if _libc.umount2(target, 0) != 0:
            err = ctypes.get_errno()
            self.problems.append(f"umount {self.mount_dir}: {os.strerror(err)}; detached lazily")
            _libc.umount2(target, MNT_DETACH)
        self._mounted = False
        try:
            self.mount_dir.rmdir()
        except OSError as exc:
            self.problems.append(f"rmdir {self.mount_dir}: {exc}")

    def create(self, read_buffer: int = 4096) -> None:
        """Everything up to, not including, the UDC bind; the device is ready but unplugged."""
        install_wake_handler()
        try:
            self.build_tree()
        except FileExistsError as exc:
            raise GadgetError(
                f"{self.dir} exists: a gadget of that name is live or left over"
            ) from exc
        except OSError as exc:
            self.destroy()
            raise GadgetError(f"configfs gadget {self.config.name}: {exc}") from exc
        try:
            self._mount()
            self.ep0 = os.open(self.mount_dir / "ep0", os.O_RDWR)
            os.write(self.ep0, self.config.descriptors)
            os.write(self.ep0, self.config.strings)
            for number in range(1, self.config.endpoints + 1):
                self.endpoints.append(Endpoint.open(self.mount_dir / f"ep{number}", read_buffer))
        except OSError as exc:
            self.destroy()
            raise GadgetError(f"FunctionFS setup of {self.config.name}: {exc}") from exc
        except GadgetError:
            self.destroy()
            raise
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._ep0_loop, name=f"ep0-{self.config.name}", daemon=True
        )
        self._thread.start()

    def _ep0_loop(self) -> None:
        poller = select.poll()
        poller.register(self.ep0, select.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            try:
                data = os.read(self.ep0, 4 * EVENT_SIZE)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR, errno.EIDRM):
                    continue
                if exc.errno == EL2HLT:  # a SETUP was left pending and FunctionFS stalled it
                    self.problems.append("ep0: a pending setup was stalled by FunctionFS")
                    continue
                self.problems.append(f"ep0 read: {exc}; ep0 thread ends")
                return
            for name, setup in parse_events(data):
                self._event(name, setup)

    def _event(self, name: str, setup: ControlSetup | None) -> None:
        self.events[name] += 1
        if name == "ENABLE":
            self.enabled.set()
        elif name in ("DISABLE", "UNBIND"):
            self.enabled.clear()
        if setup is not None:
            self._setup(setup)
        if self.on_event is not None:
            try:
                self.on_event(name)
            except Exception as exc:  # a callback bug must not end event handling
                self.problems.append(f"event {name} callback: {type(exc).__name__}: {exc}")

    def _setup(self, setup: ControlSetup) -> None:
        transfer = ControlTransfer(
            setup, lambda n: os.read(self.ep0, n), lambda data: os.write(self.ep0, data)
        )
        try:
            if self.on_setup is not None:
                self.on_setup(transfer)
            elif transfer.outcome is None:
                transfer.stall()
        except OSError as exc:
            if exc.errno != errno.EIDRM:  # EIDRM: the host gave up on it, a newer event came
                self.problems.append(f"setup {setup}: {exc}")
            return
        except Exception as exc:  # a handler bug: stall below so the host is not left waiting
            self.problems.append(f"setup {setup} handler: {type(exc).__name__}: {exc}")
        if transfer.outcome is None:
            self.problems.append(f"setup {setup} left unanswered; stalled")
            try:
                transfer.stall()
            except OSError as exc:
                if exc.errno != errno.EIDRM:
                    self.problems.append(f"setup {setup} stall: {exc}")

    # --- UDC -----------------------------------------------------------------------

    def bound_udc(self) -> str:
        try:
            return (self.dir / "UDC").read_text().strip()
        except OSError:
            return ""

    def speed(self) -> str:
        """The UDC's current speed ("high-speed", "full-speed", ...), "" if unknown."""
        try:
            return (UDC_CLASS / self.udc / "current_speed").read_text().strip()
        except OSError:
            return ""

    def plug(self, wait: bool = True, timeout: float = 10.0) -> None:
        """Bind the UDC; with ``wait``, until the host has configured us (ENABLE)."""
        self.enabled.clear()
        try:
            _write(self.dir / "UDC", self.udc)
        except OSError as exc:
            hint = {
                errno.ENODEV: "FunctionFS not ready (descriptors not written?)",
                errno.EBUSY: f"UDC {self.udc} missing or in use by another gadget",
            }.get(exc.errno, "")
            raise GadgetError(f"bind {self.config.name} to {self.udc}: {exc} {hint}") from exc
        if wait and not self.enabled.wait(timeout):
            raise GadgetError(
                f"{self.config.name}: host did not configure the device within "
                f"{timeout:g} s (events so far: {dict(self.events)})"
            )

    def unplug(self) -> bool:
        """Unbind from the UDC; False if it was not bound."""
        try:
            _write(self.dir / "UDC", "\n")  # configfs ignores a 0-byte write
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return False
            raise GadgetError(f"unbind {self.config.name}: {exc}") from exc
        return True

    # --- teardown ------------------------------------------------------------------

    def destroy(self) -> list[str]:
        """Unplug, stop the ep0 thread, close files, unmount, remove the configfs tree.

        Callers stop their endpoint threads first; returns the problems seen.
        """
        if self.dir.exists():
            try:
                self.unplug()
            except GadgetError as exc:
                self.problems.append(str(exc))
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            if self._thread.is_alive():
                self.problems.append("ep0 thread did not stop")
            self._thread = None
        for endpoint in self.endpoints:
            endpoint.close()
        self.endpoints = []
        if self.ep0 >= 0:
            os.close(self.ep0)
            self.ep0 = -1
        self._umount()
        if self.dir.exists():
            self._remove_tree()
        return list(self.problems)


class AdapterEmulator:
    """What the adapter emulators (dln2.Emulator, cp2112.Emulator) share around their model.

    One thread serves the OUT endpoint. Before ``plug()`` binds the UDC that
    thread must sit in its read; ``unplug()`` and ``plug()`` bring it back
    there with signals, because a reply written after an unplug blocks in the
    kernel until the next ENABLE, and the thread would then miss the host's
    first requests after a replug. Data read in one connection and returned
    after the unplug that ended it is dropped (``stale_reads``), not answered
    into the next connection.

    A subclass sets ``device`` (its model, with ``problems``/``problem_count``),
    ``responder`` (with ``disarm()``), the class attributes below, and
    implements ``_received``; ``_power_on`` and ``_connection_lost`` are hooks.
    """

    LABEL = "adapter"
    THREAD_NAME = "adapter-io"
    EP_OUT = 0  # index into gadget.endpoints
    EP_IN = 1
    READ_BUFFER = 4096

    device: Any
    responder: Any
    usb_serial: str  # the gadget's serial number, how the host side is found

    def __init__(self, gadget: FfsGadget):
        self.gadget = gadget
        self.problems: deque[str] = deque(maxlen=16)
        self.problem_count = 0
        self.reads = 0
        self.shutdowns = 0  # reads ended by an unplug (ESHUTDOWN/ECONNRESET)
        self.stale_reads = 0  # data from a connection that an unplug had already ended
        self.dropped_replies = 0
        self.zlps = 0
        self._in_read = False
        self._generation = 0  # bumped by every unplug, once the connection has ended
        self._read_generation = 0  # the generation the read in progress began in
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def problem(self, message: str) -> None:
        self.problem_count += 1
        self.problems.append(message)

    def all_problems(self) -> list[str]:
        return [*self.device.problems, *self.problems]

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        if not install_wake_handler():
            self.problem("started outside the main thread: stop() cannot interrupt a blocked read")
        self.gadget.create(read_buffer=self.READ_BUFFER)
        self._stop.clear()
        self._thread = threading.Thread(target=self._io_loop, name=self.THREAD_NAME, daemon=True)
        self._thread.start()

    def plug(self, wait: bool = True, timeout: float = 10.0) -> None:
        """Power up (fresh model state) and bind the UDC once the thread sits in its read."""
        if not self._settle():
            raise GadgetError(
                f"{self.LABEL} emulator thread is not reading its OUT endpoint "
                f"({self._thread_state()})"
            )
        self._power_on()
        self.gadget.plug(wait=wait, timeout=timeout)

    def unplug(self) -> bool:
        """Unbind the UDC, then bring the serving thread back into its OUT read.

        The connection ends when the unbind returns, not when it is asked for: until
        then the host may still start transfers, and they are answered (a request
        dropped then leaves the host polling a model that never saw it).
        """
        try:
            unplugged = self.gadget.unplug()
        finally:
            self._generation += 1
        if self._thread is not threading.current_thread():
            self._settle()
        return unplugged

    def stop(self) -> list[str]:
        """Unplug, stop the thread (interrupting a blocked read), tear the gadget down."""
        self._stop.set()
        self.responder.disarm()
        self._generation += 1
        try:
            self.gadget.unplug()
        except GadgetError as exc:
            self.problem(str(exc))
        thread = self._thread
        if thread is not None:
            deadline = time.monotonic() + 3.0
            while thread.is_alive() and time.monotonic() < deadline:
                if not interrupt(thread):
                    break
                thread.join(0.05)
            thread.join(0.1)
            if thread.is_alive():
                self.problem("emulator thread still blocked on its endpoint; left behind")
            self._thread = None
        for message in self.gadget.destroy():
            self.problem(message)
        return list(self.all_problems())

    def _settle(self, timeout: float = 2.0) -> bool:
        """Signal the serving thread until it sits in an OUT read begun since the last unplug
        (what a read begun before returns is stale); False if it never does."""
        thread = self._thread
        deadline = time.monotonic() + timeout
        while thread is not None and thread.is_alive():
            if self._in_read and self._read_generation == self._generation:
                return True
            if time.monotonic() > deadline:
                return False
            interrupt(thread)
            time.sleep(0.01)
        return False

    def _thread_state(self) -> str:
        thread = self._thread
        if thread is None:
            state = "not started"
        elif thread.is_alive():
            state = "alive, busy outside its read"
        else:
            state = "ended"
        return f"thread {state}; problems: {self.all_problems()}"

    # --- hooks -----------------------------------------------------------------------

    def _power_on(self) -> None:
        """Reset the model before a plug, as a real adapter starts from power-on state."""
        self.device.reset()

    def _connection_lost(self) -> None:
        """The host side went away; drop partial state tied to the connection."""

    def _stale(self, data: memoryview) -> None:
        """Data read in a connection an unplug has ended: dropped, with its partial state."""
        self._connection_lost()

    def _read_size(self) -> int:
        return self.READ_BUFFER

    def _received(self, data: memoryview) -> None:
        raise NotImplementedError

    # --- counters --------------------------------------------------------------------

    def usb_stats(self) -> dict:
        return {
            "reads": self.reads,
            "shutdowns": self.shutdowns,
            "stale_reads": self.stale_reads,
            "withheld_replies": self.responder.withheld,
            "dropped_replies": self.dropped_replies,
            "zero_length_packets": self.zlps,
            "usb_events": dict(self.gadget.events),
            "problem_count": self.problem_count + self.device.problem_count,
        }

    @staticmethod
    def wait_until(value: Callable[[], int], target: int, timeout: float) -> bool:
        """Poll ``value()`` until it reaches ``target``; False on timeout."""
        return bool(poll(lambda: value() >= target, timeout, interval=0.005))

    def wait_host(self, timeout: float = 10.0) -> Path:
        """Wait until the host's drivers are bound; return the USB interface directory."""
        interface = poll(self._host_ready, timeout)
        if interface is None:
            raise GadgetError(
                f"{self.LABEL} {self.usb_serial}: host drivers not ready after {timeout:g} s "
                f"({self._host_state()}; problems: {list(self.all_problems())})"
            )
        return interface

    def _host_ready(self) -> Path | None:
        """The USB interface once the host side is fully bound, else None."""
        raise NotImplementedError

    def _host_state(self) -> str:
        """How far the host side got, for the error when it never got ready."""
        raise NotImplementedError

    # --- the serving thread ----------------------------------------------------------

    def _write_in(self, reply: bytes) -> bool:
        """Write one reply to the IN endpoint; False when the host is gone (counted, not raised)."""
        try:
            self.gadget.endpoints[self.EP_IN].write(reply)
        except OSError as exc:
            if exc.errno in (errno.ESHUTDOWN, errno.ECONNRESET, errno.EINTR):
                self.dropped_replies += 1
            else:
                self.problem(f"IN endpoint write: {exc}")
            return False
        return True

    def _io_loop(self) -> None:
        endpoint = self.gadget.endpoints[self.EP_OUT]
        view = endpoint.view
        while not self._stop.is_set():
            generation = self._read_generation = self._generation
            self._in_read = True
            try:
                count = endpoint.read(self._read_size())
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                if exc.errno in (errno.ESHUTDOWN, errno.ECONNRESET):
                    self.shutdowns += 1
                    self._connection_lost()
                    continue
                if exc.errno == errno.EBADF:
                    return
                self.problem(f"OUT endpoint read: {exc}")
                time.sleep(0.01)
                continue
            finally:
                self._in_read = False
            if generation != self._generation:
                self.stale_reads += 1
                self._stale(view[:count])
                continue
            self.reads += 1
            self._received(view[:count])


class ArmedTriggers:
    """One-shot triggers an emulator checks after each request it serves.

    Shared by the adapter emulators: each decides when a trigger is due and
    what to snapshot; arming, taking due triggers and running their actions
    (failures recorded, never raised into the serving thread) live here.
    """

    def __init__(
        self, device: Any, send: Callable[[bytes], None], default_action: Callable[[], object]
    ) -> None:
        self.device = device  # the emulated chip whose counters the triggers watch
        self.send = send  # the reply path to the host
        self.default_action = default_action  # what a trigger without an action does (unplug)
        self.withheld = 0  # replies not sent because a trigger fired instead
        self._armed: list = []
        self._lock = threading.Lock()

    def arm(self, trigger):
        with self._lock:
            self._armed.append(trigger)
        return trigger

    def disarm(self) -> None:
        with self._lock:
            self._armed.clear()

    def armed(self) -> bool:
        return bool(self._armed)

    def take_due(self, is_due: Callable[[object], bool]) -> list:
        with self._lock:
            due = [t for t in self._armed if is_due(t)]
            for trigger in due:
                self._armed.remove(trigger)
        return due

    @staticmethod
    def fire(
        due: list,
        default_action: Callable[[], object],
        snapshot: dict,
        problem: Callable[[str], None],
    ) -> None:
        for trigger in due:
            trigger.fired_at = snapshot
            try:
                (trigger.action or default_action)()
            except Exception as exc:  # the action's failure is a result, not an emulator crash
                trigger.error = f"{type(exc).__name__}: {exc}"
                problem(f"trigger action failed: {trigger.error}")
            trigger.fired.set()


def bound_driver(device: Path) -> str | None:
    """Name of the driver bound to a sysfs device directory, None if unbound."""
    try:
        return (device / "driver").resolve(strict=True).name
    except OSError:
        return None


USB_DEVICES = Path("/sys/bus/usb/devices")


def find_usb_interface(
    usb_serial: str, vendor_id: int, product_id: int, root: Path = USB_DEVICES
) -> Path | None:
    """The host-side interface 0 (e.g. .../1-1:1.0) of the plugged device with these ids."""
    try:
        devices = sorted(root.iterdir())
    except OSError:
        return None
    want = (usb_serial, f"{vendor_id:04x}", f"{product_id:04x}")
    for device in devices:
        if ":" in device.name:
            continue
        try:
            found = tuple(
                (device / n).read_text().strip() for n in ("serial", "idVendor", "idProduct")
            )
        except OSError:
            continue
        if found == want:
            return root / f"{device.name}:1.0"
    return None

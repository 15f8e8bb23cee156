#!/usr/bin/python3 -IS
"""PID 1 of the harness guest: mount what the runner needs, run it, power off.

virtme-ng builds the QEMU command line (9p root = the host's /, virtio
devices, console); the harness swaps virtme-ng-init for this file because the
guest needs none of its services and under TCG they cost more than the rest
of the boot (systemd-tmpfiles ~5 s, udev, overlays). Started with ``-IS``:
isolated, no site-packages, standard library only.
"""

import os
import sys


def _use_module_zip() -> None:
    """Import from one zip in RAM instead of many files over 9p (~10 s saved under TCG).

    The host passes the zip as harness_zip=PATH; the kernel hands unknown
    parameters to init as environment variables. devtmpfs is the one
    writable RAM filesystem mounted before init runs.
    """
    source = os.environ.get("harness_zip")
    if not source:
        return
    target = "/dev/.harness-guest.zip"
    try:
        src = os.open(source, os.O_RDONLY)
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        while chunk := os.read(src, 1 << 20):
            os.write(dst, chunk)
        os.close(src)
        os.close(dst)
    except OSError:
        return
    sys.path.insert(0, target)


def _mark(text: str) -> None:
    try:
        fd = os.open("/dev/kmsg", os.O_WRONLY)
        os.write(fd, f"<2>harness-init: {text}\n".encode())
        os.close(fd)
    except OSError:
        pass


_mark("started")
_use_module_zip()
_mark("modules zip ready")

import ctypes  # noqa: E402

MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
RB_POWER_OFF = 0x4321FEDC
MOUNTS = (
    ("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, ""),
    ("sys", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, ""),
    ("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, ""),
    ("configfs", "/sys/kernel/config", "configfs", 0, ""),
    ("debugfs", "/sys/kernel/debug", "debugfs", 0, ""),
)

libc = ctypes.CDLL(None, use_errno=True)


SYSRQ_KEYS = "wlt"  # blocked tasks, all CPUs' backtraces, all tasks: read-only requests


def log(text: str) -> None:
    try:
        with open("/dev/kmsg", "w") as sink:
            sink.write(f"<2>harness-init: {text}\n")
    except OSError:
        print(f"harness-init: {text}", flush=True)


def mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    if libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode()) != 0:
        err = ctypes.get_errno()
        if err != 16:  # EBUSY: already mounted (devtmpfs is automounted)
            log(f"mount {fstype} on {target} failed: {os.strerror(err)}")


def boot_params() -> dict[str, str]:
    params = {}
    with open("/proc/cmdline") as cmdline:
        for word in cmdline.read().split():
            key, _, value = word.partition("=")
            params[key] = value
    return params


def _start_sysrq_helper(port: str | None) -> None:
    """A child process that turns keys from the host's serial port into sysrq requests.

    When the runner is stuck (a thread in D state, a deadlock) the host still
    gets the blocked tasks' stacks: it sends 'w' on ``port`` and this process,
    independent of the runner, writes it to /proc/sysrq-trigger. (A serial
    break would reach the kernel's own sysrq only on the console's port,
    which has no input here.)
    """
    if not port:
        return
    try:
        fd = os.open(f"/dev/{port}", os.O_RDWR | os.O_NOCTTY)
    except OSError as exc:
        log(f"harness-init: no sysrq port /dev/{port} ({exc.strerror}); no host-side stacks")
        return
    if os.fork():
        os.close(fd)
        return
    import tty

    try:
        tty.setraw(fd)
        while True:
            for key in os.read(fd, 16).decode(errors="replace"):
                if key in SYSRQ_KEYS:
                    with open("/proc/sysrq-trigger", "w") as trigger:
                        trigger.write(key)
    finally:
        os._exit(0)


def main() -> int:
    for entry in MOUNTS:
        mount(*entry)
    params = boot_params()
    # virtme-ng's --rwdir shares: 9p tag virtme.initmountN, guest path in the parameter
    for key, path in params.items():
        if key.startswith("virtme_initmount") and key[16:].isdigit():
            target = "/" + path.lstrip("/")  # virtme-ng passes it without the leading slash
            mount(
                f"virtme.initmount{key[16:]}",
                target,
                "9p",
                0,
                "version=9p2000.L,trans=virtio,access=any",
            )
    os.environ["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    _start_sysrq_helper(params.get("harness_sysrq_port"))
    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(1, project)  # after the zip, which holds the same package compiled
    from guest import runner

    plan = params.get("harness_plan")
    if not plan:
        log("no harness_plan= on the kernel command line")
        return 2
    return runner.main(["runner", plan])


if __name__ == "__main__":
    code = 1
    try:
        code = main()
    except BaseException:
        import traceback  # only here: its import costs 0.2 s of every boot under TCG

        log("runner crashed:\n" + traceback.format_exc())
        traceback.print_exc()
    log(f"runner exit code {code}; powering off")
    libc.sync()
    libc.reboot(RB_POWER_OFF)

"""An interactive shell on the guest's serial console, for `harness run --shell`.

The host feeds the console's input only in a --shell boot; the runner calls
``run()`` with the item's fixtures set up, and goes on (teardown, power off)
when the developer leaves the shell.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

PROMPT = "harness-guest# "


def console_tty() -> str:
    """The kernel's console device ('ttyS0'): the last one /sys lists is where input goes."""
    active = Path("/sys/class/tty/console/active").read_text().split()
    return active[-1] if active else "ttyS0"


def run(banner: str) -> int:
    """``banner``, then /bin/sh on the console as its controlling terminal; its exit status.

    setsid --ctty gives the shell a session and job control, so Ctrl-C stops
    the command in the shell, not the runner.
    """
    fd = os.open(f"/dev/{console_tty()}", os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, banner.encode())
        env = {**os.environ, "PS1": PROMPT, "HOME": "/root", "TERM": "linux"}
        done = subprocess.run(
            ["setsid", "--ctty", "--wait", "/bin/sh", "-i"],
            stdin=fd,
            stdout=fd,
            stderr=fd,
            env=env,
            cwd="/sys",
            check=False,
        )
        return done.returncode
    finally:
        os.close(fd)

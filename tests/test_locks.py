"""Two processes on one cache directory take turns, and the second says what it waits for."""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HOLDER = """
import sys, time
from pathlib import Path
from harness import locks
lock, log, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
with locks.hold(lock, "the build directory test"):
    with log.open("a") as sink:
        sink.write(f"{name} in {time.monotonic()}\\n")
    time.sleep(1.0)
    with log.open("a") as sink:
        sink.write(f"{name} out {time.monotonic()}\\n")
"""


def hold_lock(lock: Path, log: Path, name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", HOLDER, str(lock), str(log), name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_second_process_waits_and_both_finish(tmp_path):
    lock, log = tmp_path / "build.lock", tmp_path / "log"
    first = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock), str(log), "a"], cwd=ROOT, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while not (log.exists() and "a in" in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = hold_lock(lock, log, "b")
    first.wait(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    events = [line.split() for line in log.read_text().splitlines()]
    assert [(who, what) for who, what, _ in events] == [
        ("a", "in"),
        ("a", "out"),
        ("b", "in"),
        ("b", "out"),
    ]
    assert "waiting for the build directory test: locked by pid" in second.stderr
    assert str(lock) in second.stderr


def test_lock_of_a_killed_holder_is_free(tmp_path):
    lock, log = tmp_path / "build.lock", tmp_path / "log"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock), str(log), "a"], cwd=ROOT)
    deadline = time.monotonic() + 30
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    holder.kill()
    holder.wait()
    second = hold_lock(lock, log, "b")
    assert second.returncode == 0
    assert log.read_text().splitlines()[-1].startswith("b out")

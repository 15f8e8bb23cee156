"""`harness bisect` against the naive `git bisect run harness run SCENARIO --tree .`.

Both bisect the history of tests/history.py (an unrelated WARN, a build break
and the injected gpio-sim lifetime bug among docs commits), each from its own
empty build cache with ccache disabled. The naive run treats every non-zero
`harness run` exit as bad (a WARN fails the scenario; a build failure is exit
3), which is what a user gets without the harness's bisection. Reports steps,
builds, wall time and whether each named the right commit; writes
benchmarks/results-bisect.json.

    .venv/bin/python benchmarks/bisection.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import vcs  # noqa: E402
from harness.tree import default_tree  # noqa: E402
from tests.history import CULPRIT, SCENARIO, TARGET, make_history  # noqa: E402


def checkout(where: Path, commit: str) -> None:
    """A checkout of the history of its own, as a user's repository would be."""
    vcs.git(
        default_tree(restore=False).path, "worktree", "add", "-q", "--detach", str(where), commit
    )


def env_for(cache: Path) -> dict[str, str]:
    return {**os.environ, "HARNESS_CACHE": str(cache), "CCACHE_DISABLE": "1"}


def harness_bisect(history: list[str], work: Path) -> dict:
    cache = work / "harness-cache"
    cache.mkdir()
    out = work / "harness-bisect"
    args = [sys.executable, "-m", "harness.cli", "bisect", SCENARIO, "--good", history[0]]
    args += ["--bad", history[-1], "--title", TARGET, "--out", str(out)]
    # its own checkout of the history: a user's repository, so a cold worktree and build
    repo = work / "repo"
    checkout(repo, history[-1])
    started = time.monotonic()
    with (work / "harness-bisect.log").open("w") as sink:
        code = subprocess.run(
            [*args, "--tree", str(repo)],
            cwd=ROOT,
            env=env_for(cache),
            stdout=sink,
            stderr=subprocess.STDOUT,
        ).returncode
    took = time.monotonic() - started
    summary = json.loads((out / "summary.json").read_text())
    culprit = (summary.get("culprit") or {}).get("commit")
    return {
        "exit": code,
        "wall_s": round(took, 1),
        "tested": len(summary["tested"]),
        "builds_s": [t["build_s"] for t in summary["tested"]],
        "named": culprit,
        "right": culprit == history[CULPRIT],
        "result": summary["result"],
    }


def naive_bisect(history: list[str], work: Path) -> dict:
    repo = work / "naive"
    checkout(repo, history[-1])
    cache = work / "naive-cache"
    cache.mkdir()
    run = [
        sys.executable,
        "-m",
        "harness.cli",
        "run",
        SCENARIO,
        "--tree",
        ".",
        "--out",
        str(work / "naive-results"),
    ]
    started = time.monotonic()
    env = {**env_for(cache), "PYTHONPATH": str(ROOT)}
    vcs.git(repo, "bisect", "start", history[-1], history[0])
    with (work / "naive.log").open("w") as sink:
        subprocess.run(
            ["git", "-C", str(repo), "bisect", "run", *run],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    took = time.monotonic() - started
    log = vcs.git(repo, "bisect", "log")
    vcs.git(repo, "bisect", "reset")
    first = re.search(r"# first bad commit: \[([0-9a-f]{40})\]", log)
    named = first.group(1) if first else None
    steps = len(re.findall(r"^git bisect (?:good|bad|skip)", log, re.M))
    return {
        "wall_s": round(took, 1),
        "tested": steps,
        "named": named,
        "right": named == history[CULPRIT],
        "named_subject": vcs.subject(repo, named) if named else None,
    }


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bisect-bench-"))
    repo = default_tree(restore=False).path
    history = make_history(repo, work / "history")
    results = {"history": history, "culprit": history[CULPRIT]}
    results["harness"] = harness_bisect(history, work)
    results["naive"] = naive_bisect(history, work)
    for name in ("harness", "naive"):
        r = results[name]
        print(
            f"{name:8} {r['wall_s']:7.1f} s  {r['tested']} commits tested  "
            f"named {str(r['named'])[:12]} ({'right' if r['right'] else 'WRONG'})"
        )
    print(f"harness step builds: {results['harness']['builds_s']}")
    (ROOT / "benchmarks" / "results-bisect.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0 if results["harness"]["right"] else 1


if __name__ == "__main__":
    sys.exit(main())

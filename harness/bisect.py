"""`harness bisect`: the commit that introduced (or, with --fix, fixed) one lifetime bug.

Lifetime bugs are races and a range holds other crashes and build breaks, so:
the endpoints are checked first (the bad one's reproduction rate measured,
the good one run as often as a good verdict needs); each commit gets enough
runs that a commit with the bug is called good with probability at most 1 %,
stopping at the first reproduction; only the target bug (splats.same_bug) is
a reproduction; another crash is listed, and makes the commit good when the
scenario still ran to its end, skip when it cut the run short; a build, boot
or fixture failure is skip. git bisect itself keeps the state (its log is in
the results); every commit is built in the repository's harness worktree at
one path, so each step rebuilds incrementally.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness import pipeline, report, splats, vcs
from harness.pipeline import PipelineError, RunRequest
from harness.progress import say
from harness.run import ItemResult
from harness.splats import Splat

MISS_PROBABILITY = 0.01  # of calling a commit that has the bug good
ENDPOINT_RUNS = 10  # at most, on the bad commit, to measure the rate
ENDPOINT_REPRODUCTIONS = 3  # enough reproductions on the bad commit to stop measuring

EXIT_FOUND = 0
EXIT_INCONCLUSIVE = 1


@dataclass(frozen=True)
class BisectRequest(RunRequest):
    good: str = ""
    bad: str = ""
    runs: int | None = None  # per commit; None: from the bad commit's rate
    title: str | None = None  # the bug to bisect, when the bad commit shows several
    fix: bool = False  # find the first commit without the bug after one with it


@dataclass
class RunSeen:
    """What one run of the scenario at one commit showed, for this bisection."""

    id: str
    status: str
    outcome: str  # reproduced | clean | other-crash | cut-short | no-verdict | not-run
    titles: list[str]
    why: str = ""

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Tested:
    commit: str
    subject: str
    role: str  # "bad endpoint", "good endpoint", "step 3"
    verdict: str  # bad | good | skip | unbuilt
    why: str
    runs: list[RunSeen] = field(default_factory=list)
    build_s: float | None = None  # also for a failed build: what the step cost
    objects: int | None = None
    built: bool = True
    out: str = ""
    repro: str = ""

    def line(self) -> str:
        seen = " ".join(_RUN_MARK[r.outcome] for r in self.runs if r.outcome != "not-run") or "-"
        build = f"{self.build_s:.0f} s" if self.build_s is not None else "-"
        return (
            f"{self.role:<14} {self.commit[:12]} {self.verdict:<5} build {build:>6}  "
            f"runs {seen:<12} {self.why}  ({self.subject})"
        )

    def to_json(self) -> dict:
        data = dict(self.__dict__)
        data["runs"] = [r.to_json() for r in self.runs]
        return data


_RUN_MARK = {
    "reproduced": "X",
    "clean": ".",
    "other-crash": "o",
    "cut-short": "c",
    "no-verdict": "e",
    "not-run": "-",
}


def runs_needed(reproduced: int, ran: int, miss: float = MISS_PROBABILITY) -> int:
    """Clean runs that make 'good' wrong with probability <= miss, for the measured rate.

    The rate is taken as reproduced / (ran + 1): a bug that reproduced in all of
    few runs is not assumed to reproduce always (3 of 3 gives 0.75, 4 runs).
    """
    rate = reproduced / (ran + 1)
    if rate <= 0:
        raise ValueError("no reproduction to size the runs from")
    return max(1, math.ceil(math.log(miss) / math.log(1 - rate)))


def classify(result: ItemResult, target: Splat | None) -> RunSeen:
    titles = [s.title for s in result.splats]
    seen = RunSeen(result.item.id, result.status, "clean", titles)
    if result.status == "skipped":
        seen.outcome = "not-run"
        seen.why = (result.error or "not run").splitlines()[0]
    elif target is not None and any(splats.same_bug(s, target) for s in result.splats):
        seen.outcome = "reproduced"
    elif result.status == "error":
        seen.outcome = "no-verdict"
        seen.why = (result.error or "no verdict").splitlines()[0]
    elif result.splats:
        ran_to_end = bool(result.guest) and result.guest.get("cycles_done") == result.guest.get(
            "cycles"
        )
        seen.outcome = "other-crash" if ran_to_end else "cut-short"
    elif result.violations:
        seen.outcome = "clean"  # no splat: not this bug (the violation is listed)
        seen.why = result.violations[0]
    return seen


def verdict_of(runs: list[RunSeen]) -> tuple[str, str]:
    """bad (reproduced), good (ran clean or with other crashes only), or skip."""
    if runs and all(r.outcome == "not-run" for r in runs):  # e.g. the tree lacks the API
        return "skip", f"the scenario did not run: {runs[0].why}"
    if any(r.outcome == "reproduced" for r in runs):
        n = sum(1 for r in runs if r.outcome == "reproduced")
        return "bad", f"reproduced in {n} of {sum(1 for r in runs if r.outcome != 'not-run')}"
    if any(r.outcome in ("cut-short", "no-verdict") for r in runs):
        first = next(r for r in runs if r.outcome in ("cut-short", "no-verdict"))
        detail = first.why or "; ".join(first.titles)
        return "skip", f"a run was cut short ({first.outcome}: {detail})"
    others = sorted({t for r in runs for t in r.titles})
    if others:
        return "good", f"{len(runs)} runs without the target; other crash: {'; '.join(others)}"
    return "good", f"{len(runs)} clean runs"


@dataclass
class BisectOutcome:
    scenario: str
    exit_code: int
    result: str  # the sentence
    culprit: dict | None
    target: str | None
    others: list[str]
    rate: str
    runs_per_commit: int | None
    tested: list[Tested]
    skipped: list[str]
    out: Path
    command: list[str]
    log: str = ""
    duration_s: float = 0.0


class _Bisector:
    def __init__(self, request: BisectRequest, scenario_path: str, worktree: vcs.Worktree):
        self.request = request
        self.scenario = scenario_path
        self.worktree = worktree
        self.out = Path(request.out_dir).resolve()
        self.target: Splat | None = None
        self.others: list[str] = []
        self.tested: list[Tested] = []

    def test(self, commit: str, role: str, runs: int, stop_after: int) -> Tested:
        """Build and run ``commit``; stop once the target reproduced ``stop_after`` times."""
        subject = vcs.subject(self.worktree.repo, commit)
        say(f"{role}: {commit[:12]} {subject!r}: up to {runs} run(s)")
        self.worktree.checkout(commit)
        out = self.out / "steps" / f"{len(self.tested) + 1:02d}-{commit[:12]}"

        told: set[str] = set()

        def enough(finished: list[ItemResult]) -> str | None:
            self._target_from(finished)
            seen = [classify(r, self.target) for r in finished]
            for i, s in enumerate(seen, 1):
                if s.id not in told:
                    told.add(s.id)
                    what = "; ".join(s.titles) or s.why or s.status
                    say(f"{role}: run {i} of {runs}: {s.outcome} ({what})")
            hits = sum(1 for s in seen if s.outcome == "reproduced")
            return f"reproduced {hits} time(s)" if hits >= stop_after else None

        step_request = replace(
            self.request,
            tree=str(self.worktree.path),
            scenarios=(self.scenario,),
            out_dir=str(out),
            repeat=runs,
            enough=enough,
        )
        outcome = pipeline.run_scenarios(step_request)
        build = outcome.info.build or {}
        tested = Tested(
            commit,
            subject,
            role,
            "unbuilt",
            "",
            build_s=build.get("duration_s"),
            objects=build.get("objects_compiled"),
            out=str(out),
            repro=pipeline.commit_repro_command(
                self.request, self.worktree.path, commit, [self.scenario], runs
            ),
        )
        if outcome.exit_code == pipeline.EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        if outcome.exit_code in (pipeline.EXIT_BUILD, pipeline.EXIT_BAD_INPUT):
            tested.verdict, tested.built = "skip", False
            tested.why = f"not built: {(outcome.info.harness_error or '').splitlines()[0]}"
        else:
            self._target_from(outcome.results)
            tested.runs = [classify(r, self.target) for r in outcome.results]
            tested.verdict, tested.why = verdict_of(tested.runs)
            for r in outcome.results:
                for s in r.splats:
                    if self.target is None or not splats.same_bug(s, self.target):
                        if s.title not in self.others:
                            self.others.append(s.title)
        say(f"{role}: {commit[:12]}: {tested.verdict}: {tested.why}")
        self.tested.append(tested)
        return tested

    def _target_from(self, results: list[ItemResult]) -> None:
        if self.target is None:
            for r in results:
                if r.splats:
                    self._choose_target(r.splats)
                if self.target is not None:
                    return

    def _choose_target(self, found: list[Splat]) -> None:
        wanted = self.request.title
        if wanted:
            key = splats.normalized_title(wanted)
            match = next((s for s in found if splats.normalized_title(s.title) == key), None)
            match = match or next((s for s in found if wanted in s.title), None)
            if match is None:
                return
            self.target = match
            say(f"target: {match.title} (--title)")
        else:
            self.target = found[0]
            rest = [s.title for s in found[1:]]
            say(
                f"target: {found[0].title} (the first splat of the first reproducing run; "
                f"--title picks another{': ' + '; '.join(rest) if rest else ''})"
            )


def _mark(worktree: vcs.Worktree, term: str) -> str:
    """git bisect good/bad/skip; its words (it exits 2 when only skipped commits are left)."""
    try:
        return vcs.git(worktree.path, "bisect", term, identity=True)
    except vcs.VcsError as exc:
        if "only 'skip'ped commits left" in str(exc):
            return str(exc)
        raise


def _range_steps(repo: Path, old: str, new: str) -> int:
    count = int(vcs.git(repo, "rev-list", "--count", f"{old}..{new}"))
    return max(1, math.ceil(math.log2(count))) if count > 1 else 1


def run_bisect(request: BisectRequest) -> BisectOutcome:
    started = time.monotonic()
    pipeline.install_signal_handlers()
    (scenario,) = pipeline.load(request)
    repo = pipeline.open_repository(request)
    command = pipeline.invocation(request)
    out = Path(request.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with vcs.worktree(repo) as worktree:
            if vcs.harness_owned(repo):
                vcs.restore_import(repo)
            good = vcs.resolve(repo, request.good)
            bad = vcs.resolve(repo, request.bad)
            old, new = (bad, good) if request.fix else (good, bad)
            if not vcs.is_ancestor(repo, old, new):
                raise PipelineError(
                    f"{'--bad' if request.fix else '--good'} must be an ancestor of "
                    f"{'--good' if request.fix else '--bad'} ({old[:12]} is not in {new[:12]}'s "
                    "history)" + ("" if request.fix else "; a fix-bisection needs --fix")
                )
            bisector = _Bisector(request, scenario.path, worktree)
            outcome = _bisect(bisector, request, repo, worktree, good, bad, old, new)
    except vcs.VcsError as exc:
        raise PipelineError(str(exc)) from exc
    outcome.scenario = scenario.name
    outcome.command = command
    outcome.duration_s = round(time.monotonic() - started, 1)
    report.write_bisect(out, outcome)
    for t in outcome.tested:
        say(t.line())
    say(f"bisect: {outcome.result}")
    return outcome


def _bisect(
    b: _Bisector,
    request: BisectRequest,
    repo: Path,
    worktree: vcs.Worktree,
    good: str,
    bad: str,
    old: str,
    new: str,
) -> BisectOutcome:
    def finish(code: int, result: str, culprit: dict | None = None, skipped=()) -> BisectOutcome:
        return BisectOutcome(
            "",
            code,
            result,
            culprit,
            b.target.title if b.target else None,
            b.others,
            rate,
            per_commit,
            b.tested,
            list(skipped),
            b.out,
            [],
            log=log,
        )

    rate, per_commit, log = "", None, ""
    endpoint = b.test(bad, "bad endpoint", ENDPOINT_RUNS, ENDPOINT_REPRODUCTIONS)
    if not endpoint.built:
        raise PipelineError(f"the bad commit {bad[:12]} could not be built: {endpoint.why}", 3)
    hits = sum(1 for r in endpoint.runs if r.outcome == "reproduced")
    ran = sum(1 for r in endpoint.runs if r.outcome != "not-run")
    if not ran:
        return finish(EXIT_INCONCLUSIVE, f"on the bad commit {endpoint.why}")
    if request.title and b.target is None:
        return finish(
            EXIT_INCONCLUSIVE,
            f"no splat titled {request.title!r} on the bad commit in {ran} runs "
            f"(seen: {'; '.join(b.others) or 'none'})",
        )
    if not hits:
        return finish(
            EXIT_INCONCLUSIVE, f"the bug did not reproduce on the bad commit in {ran} runs"
        )
    rate = f"{hits}/{ran}"
    per_commit = request.runs or runs_needed(hits, ran)
    why = (
        "--runs"
        if request.runs
        else f"a miss probability of at most {MISS_PROBABILITY:.0%} at rate {hits}/({ran}+1)"
    )
    say(f"rate on the bad commit: {rate}; {per_commit} run(s) per commit ({why})")
    endpoint = b.test(good, "good endpoint", per_commit, 1)
    if not endpoint.built:
        raise PipelineError(f"the good commit {good[:12]} could not be built: {endpoint.why}", 3)
    if endpoint.verdict == "bad":
        return finish(EXIT_INCONCLUSIVE, f"the good commit already fails: {endpoint.why}")
    if endpoint.verdict == "skip":
        return finish(EXIT_INCONCLUSIVE, f"the good commit could not be tested: {endpoint.why}")
    terms = ["--term-old=broken", "--term-new=fixed"] if request.fix else []
    mark = {"bad": "broken", "good": "fixed"} if request.fix else {"bad": "bad", "good": "good"}
    vcs.git(worktree.path, "bisect", "reset")  # a bisection left behind by a killed run
    said = vcs.git(worktree.path, "bisect", "start", *terms, new, old)
    steps = _range_steps(repo, old, new)
    step = 0
    try:
        while True:
            first = re.search(r"^([0-9a-f]{40}) is the first (?:bad|new|fixed) commit", said, re.M)
            if first:
                culprit = first.group(1)
                log = vcs.git(worktree.path, "bisect", "log")
                seen = next((t for t in b.tested if t.commit == culprit), None)
                info = {
                    "commit": culprit,
                    "subject": vcs.subject(repo, culprit),
                    "author": vcs.git(repo, "log", "-1", "--format=%an <%ae>", culprit),
                    "title": b.target.title if b.target else None,
                    "tested": seen.verdict if seen else "endpoint",
                }
                what = "fixed" if request.fix else "introduced"
                return finish(
                    EXIT_FOUND,
                    f"{culprit[:12]} ({info['subject']}) {what} "
                    f"{b.target.title if b.target else 'the bug'}",
                    info,
                )
            if "only 'skip'ped commits left" in said:
                log = vcs.git(worktree.path, "bisect", "log")
                left = re.findall(r"^([0-9a-f]{40})", said.split("could be any of:")[-1], re.M)
                names = [f"{c[:12]} {vcs.subject(repo, c)}" for c in left]
                return finish(
                    EXIT_INCONCLUSIVE,
                    "inconclusive: the culprit is among skipped commits: " + "; ".join(names),
                    skipped=left,
                )
            step += 1
            commit = vcs.git(worktree.path, "rev-parse", "HEAD")
            left = re.search(r"roughly (\d+) step", said)
            steps = int(left.group(1)) + step if left else steps
            tested = b.test(commit, f"step {step} of ~{steps}", per_commit, 1)
            said = _mark(worktree, mark.get(tested.verdict, "skip"))
    finally:
        log = log or vcs.git(worktree.path, "bisect", "log")
        (b.out / "bisect.log").write_text(log + "\n")
        vcs.git(worktree.path, "bisect", "reset")

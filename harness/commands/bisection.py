"""`harness bisect`: the commit that introduced (or, with --fix, fixed) each lifetime bug.

Lifetime bugs are races and a range holds other crashes and build breaks, so:
the endpoints are checked first (the bad one's runs find the bugs, each
distinct bug with its reproduction rate; the good one is run as often as a
good verdict needs); each bug the bad endpoint has and the good one has not
is bisected on its own, most severe first (memory safety and hangs, then
lockdep, then the rest, WARN last), with enough runs per commit that a
commit with that bug is called good with probability at most 1 %
(evidence.py); only that bug (splats.same_bug) is a reproduction; another
crash makes the commit good for it when the scenario still ran to its end,
skip when it cut the run short; a build, boot or fixture failure is skip.
Every tested commit is run until each bug still to bisect has its verdict
there, so the later bisections reuse its runs without a build or a boot.
git bisect itself keeps the state (its log is in the results); every commit
is built in the repository's harness worktree at one path, so each step
rebuilds incrementally.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from junit_xml import TestCase, TestSuite

from harness import compare, evidence, paths, report, splats, stages, vcs
from harness.commands import run as run_command
from harness.commands.run import RunRequest
from harness.evidence import MISS_PROBABILITY, runs_needed
from harness.progress import say
from harness.results import ItemResult
from harness.splats import Splat
from harness.status import Exit, PipelineError

ENDPOINT_RUNS = evidence.MAX_RUNS  # at most, on the bad commit, to measure the rates
# Of every bug seen, enough to stop measuring: 4 in a row make a clean step need
# 3 runs (rate 0.8), 3 in a row 4 runs; a fifth to eighth change nothing. An
# endpoint run costs about what a step run does, and it saves one at every good step.
ENDPOINT_REPRODUCTIONS = 4


# Which bug a report puts first: memory safety and hangs, then locking, then the
# rest (a leak, a kind the parser learns later), WARN last.
_MEMORY_SAFETY = ("kasan", "oops", "bug", "list-corruption", "ubsan", "panic")
_HANGS = ("hung-task", "rcu-stall", "lockup")
_SEVERITY = {
    **dict.fromkeys(_MEMORY_SAFETY + _HANGS, 0),
    **dict.fromkeys(("lockdep", "atomic-sleep"), 1),
    "warning": 3,
}


def severity(splat: Splat) -> int:
    """0 memory safety and hangs, 1 lockdep and atomic context, 2 others, 3 WARN."""
    return _SEVERITY.get(splat.kind, 2)


@dataclass(frozen=True)
class BisectRequest(RunRequest):
    good: str = ""
    bad: str = ""
    runs: int | None = None  # per commit; None: from the bad commit's rate of each bug
    title: str | None = None  # the one bug to bisect, when the bad commit shows several
    fix: bool = False  # find the first commit without the bug after one with it


@dataclass
class RunSeen:
    """What one run of the scenario at one commit showed, for one bug's bisection."""

    id: str
    status: str
    outcome: str  # reproduced | clean | other-crash | cut-short | no-verdict | not-run
    titles: list[str]
    why: str = ""


@dataclass
class Tested:
    """One commit, built and run once for every bug still to bisect."""

    commit: str
    subject: str
    role: str  # "bad endpoint", "good endpoint", "step 3 of ~4"
    results: list[ItemResult] = field(default_factory=list)
    build_s: float | None = None  # also for a failed build: what the step cost
    objects: int | None = None
    built: bool = True
    unbuilt: str = ""  # why not
    out: str = ""
    repro: str = ""

    def seen(self, target: Splat) -> list[RunSeen]:
        return [classify(r, target) for r in self.results]

    def verdict(self, target: Splat) -> tuple[str, str]:
        """bad, good or skip for this bug, and why."""
        if not self.built:
            return "skip", f"not built: {self.unbuilt}"
        return verdict_of(self.seen(target))

    def titles(self) -> list[str]:
        return list(dict.fromkeys(s.title for r in self.results for s in r.splats))

    def to_json(self) -> dict:
        return {
            "commit": self.commit,
            "subject": self.subject,
            "role": self.role,
            "built": self.built,
            "unbuilt": self.unbuilt,
            "build_s": self.build_s,
            "objects": self.objects,
            "runs": [
                {"id": r.item.id, "status": r.status, "titles": [s.title for s in r.splats]}
                for r in self.results
            ],
            "out": self.out,
            "repro": self.repro,
        }


_RUN_MARK = {
    "reproduced": "X",
    "clean": ".",
    "other-crash": "o",
    "cut-short": "c",
    "no-verdict": "e",
    "not-run": "-",
}


@dataclass
class Step:
    """A commit as one bug's bisection used it; reused: its runs were made for another bug."""

    role: str
    tested: Tested
    verdict: str
    why: str
    marks: str
    reused: bool = False

    def line(self) -> str:
        t = self.tested
        build = "reused" if self.reused else f"{t.build_s:.0f} s" if t.build_s is not None else "-"
        return (
            f"{self.role:<14} {t.commit[:12]} {self.verdict:<5} build {build:>6}  "
            f"runs {self.marks:<12} {self.why}  ({t.subject})"
        )

    def to_json(self) -> dict:
        return {
            "role": self.role,
            "commit": self.tested.commit,
            "verdict": self.verdict,
            "why": self.why,
            "runs": self.marks,
            "reused": self.reused,
        }


def classify(result: ItemResult, target: Splat) -> RunSeen:
    titles = [s.title for s in result.splats]
    seen = RunSeen(result.item.id, result.status, "clean", titles)
    if result.status == "skipped":
        seen.outcome = "not-run"
        seen.why = (result.error or "not run").splitlines()[0]
    elif any(splats.same_bug(s, target) for s in result.splats):
        seen.outcome = "reproduced"
    elif result.status == "error":
        seen.outcome = "no-verdict"
        seen.why = (result.error or "no verdict").splitlines()[0]
    elif result.splats:
        ran_to_end = bool(result.guest) and result.guest.cycles_done == result.guest.cycles
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


def distinct_bugs(results: list[ItemResult]) -> list[Splat]:
    """The runs' bugs, one splat each (a fault after a KASAN report is its echo), most
    severe first, in the order they first showed within one severity."""
    found: list[Splat] = []
    for r in results:
        for s in compare.without_echoes(r.splats):
            if not any(splats.same_bug(s, seen) for seen in found):
                found.append(s)
    return sorted(found, key=severity)


def chosen(found: list[Splat], wanted: str) -> Splat | None:
    """--title: the bug whose title is ``wanted`` (as normalized titles compare), or contains it."""
    key = splats.normalized_title(wanted)
    match = next((s for s in found if splats.normalized_title(s.title) == key), None)
    return match or next((s for s in found if wanted in s.title), None)


@dataclass
class BugBisection:
    """One bug of the bad endpoint and the commit that introduced (or fixed) it."""

    target: Splat
    hits: int  # on the bad endpoint
    ran: int
    runs_per_commit: int
    exit_code: int = Exit.INCONCLUSIVE
    result: str = ""
    culprit: dict | None = None
    steps: list[Step] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # the candidates, when among skipped
    log: str = ""

    @property
    def title(self) -> str:
        return self.target.title

    def decided(self, results: list[ItemResult]) -> bool:
        """Whether a commit's runs so far give this bug a verdict there."""
        seen = [classify(r, self.target) for r in results]
        ran = sum(1 for s in seen if s.outcome != "not-run")
        return any(s.outcome == "reproduced" for s in seen) or ran >= self.runs_per_commit

    def use(self, role: str, tested: Tested, reused: bool) -> str:
        verdict, why = tested.verdict(self.target)
        seen = tested.seen(self.target)
        marks = " ".join(_RUN_MARK[r.outcome] for r in seen if r.outcome != "not-run") or "-"
        self.steps.append(Step(role, tested, verdict, why, marks, reused))
        return verdict

    def to_json(self) -> dict:
        return {
            "title": self.title,
            "kind": self.target.kind,
            "severity": severity(self.target),
            "rate": f"{self.hits}/{self.ran}",
            "runs_per_commit": self.runs_per_commit,
            "exit_code": self.exit_code,
            "result": self.result,
            "culprit": self.culprit,
            "skipped_candidates": self.skipped,
            "commits": [s.to_json() for s in self.steps],
        }


@dataclass
class BisectOutcome:
    scenario: str
    exit_code: int
    result: str  # the sentence
    bugs: list[BugBisection]  # bisected, most severe first
    already: list[str]  # bugs of the bad endpoint the good one has too: not bisected
    others: list[str]  # seen on some tested commit, never a bug of the bad endpoint
    tested: list[Tested]
    out: Path
    command: list[str]
    duration_s: float = 0.0

    @property
    def culprit(self) -> dict | None:
        """The first (most severe) bug's culprit."""
        return self.bugs[0].culprit if self.bugs else None


# How a bisection gets a commit's runs: (commit, role, runs, done) -> Tested. BuildAndRun
# builds and boots; the fast tests pass recorded runs.
RunCommit = Callable[[str, str, int, Callable[[list[ItemResult]], bool]], Tested]


class Commits:
    """Every commit tested so far: each is built and run once, for every bug at once."""

    def __init__(self, out: Path, run_commit: RunCommit):
        self.out = out
        self.run_commit = run_commit
        self.tested: list[Tested] = []
        self.logs: list[str] = []  # git bisect log, one per bug, for bisect.log

    def test(
        self, commit: str, role: str, runs: int, done: Callable[[list[ItemResult]], bool]
    ) -> tuple[Tested, bool]:
        """``commit``'s runs: those of an earlier test (reused: True) or up to ``runs`` new
        ones, stopping once ``done`` says every bug that matters has its verdict."""
        earlier = next((t for t in self.tested if t.commit == commit), None)
        if earlier is not None:
            say(f"{role}: {commit[:12]}: the runs of {earlier.role} (no build, no boot)")
            return earlier, True
        tested = self.run_commit(commit, role, runs, done)
        self.tested.append(tested)
        return tested, False


@dataclass
class BuildAndRun:
    """A commit's runs for real: checked out in the worktree, built, booted, run."""

    request: BisectRequest
    scenario: str  # the scenario's file
    worktree: vcs.Worktree
    count: int = 0  # commits run so far, for their directories' order

    def __call__(
        self, commit: str, role: str, runs: int, done: Callable[[list[ItemResult]], bool]
    ) -> Tested:
        """Build ``commit`` and run the scenario up to ``runs`` times, until ``done``."""
        subject = vcs.subject(self.worktree.repo, commit)
        say(f"{role}: {commit[:12]} {subject!r}: up to {runs} run(s)")
        self.worktree.checkout(commit)
        self.count += 1
        out = Path(self.request.out_dir).resolve() / "steps" / f"{self.count:02d}-{commit[:12]}"
        told: set[str] = set()

        def enough(finished: list[ItemResult]) -> str | None:
            for i, r in enumerate(finished, 1):
                if r.item.id not in told:
                    told.add(r.item.id)
                    what = "; ".join(s.title for s in r.splats) or r.status
                    say(f"{role}: run {i} of {runs}: {what}")
            return "every bug has its verdict here" if done(finished) else None

        step_request = replace(
            self.request,
            tree=str(self.worktree.path),
            placed=True,
            scenarios=(self.scenario,),
            out_dir=str(out),
            repeat=runs,
            enough=enough,
        )
        outcome = run_command.run_scenarios(step_request)
        build = outcome.info.build or {}
        tested = Tested(
            commit,
            subject,
            role,
            build_s=build.get("duration_s"),
            objects=build.get("objects_compiled"),
            out=str(out),
            repro=run_command.commit_repro_command(
                self.request, self.worktree.path, commit, [self.scenario], runs
            ),
        )
        if outcome.exit_code == Exit.INTERRUPTED:
            raise KeyboardInterrupt
        if outcome.exit_code in (Exit.BUILD, Exit.BAD_INPUT):
            tested.built = False
            tested.unbuilt = (outcome.info.harness_error or "").splitlines()[0]
        else:
            tested.results = outcome.results
        return tested


def run_bisect(request: BisectRequest) -> BisectOutcome:
    started = time.monotonic()
    stages.install_signal_handlers()
    (scenario,) = stages.load(request)
    repo = stages.open_repository(request)
    command = run_command.invocation(request)
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
            commits = Commits(out, BuildAndRun(request, scenario.path, worktree))
            outcome = bisect_bugs(commits, request, repo, worktree, good, bad, old, new)
    except vcs.VcsError as exc:
        raise PipelineError(str(exc)) from exc
    outcome.scenario = scenario.name
    outcome.command = command
    outcome.duration_s = round(time.monotonic() - started, 1)
    write_bisect(out, outcome)
    for bug in outcome.bugs:
        say(f"bug: {bug.title}")
        for s in bug.steps:
            say(f"  {s.line()}")
    say(f"bisect: {outcome.result}")
    return outcome


def bisect_bugs(
    b: Commits,
    request: BisectRequest,
    repo: Path,
    worktree: vcs.Worktree,
    good: str,
    bad: str,
    old: str,
    new: str,
) -> BisectOutcome:
    bugs: list[BugBisection] = []
    found: list[Splat] = []  # the bad endpoint's bugs (--title: the one)
    already: list[str] = []

    def finish(code: int, result: str) -> BisectOutcome:
        others = [
            s.title
            for tested in b.tested
            for r in tested.results
            for s in r.splats
            if not any(splats.same_bug(s, k) for k in found)
        ]
        return BisectOutcome(
            "", code, result, bugs, already, list(dict.fromkeys(others)), b.tested, b.out, []
        )

    def measured(results: list[ItemResult]) -> bool:
        found = distinct_bugs(results)
        if request.title:
            found = [s] if (s := chosen(found, request.title)) else []
        return bool(found) and all(
            sum(1 for r in results if classify(r, s).outcome == "reproduced")
            >= ENDPOINT_REPRODUCTIONS
            for s in found
        )

    endpoint, _ = b.test(bad, "bad endpoint", ENDPOINT_RUNS, measured)
    if not endpoint.built:
        raise PipelineError(f"the bad commit {bad[:12]} could not be built: {endpoint.unbuilt}", 3)
    ran = sum(1 for r in endpoint.results if r.status != "skipped")
    if not ran:
        why = (endpoint.results[0].error or "not run") if endpoint.results else "no runs"
        return finish(Exit.INCONCLUSIVE, f"on the bad commit the scenario did not run: {why}")
    found[:] = distinct_bugs(endpoint.results)
    if request.title:
        match = chosen(found, request.title)
        if match is None:
            seen = "; ".join(endpoint.titles()) or "none"
            found.clear()
            return finish(
                Exit.INCONCLUSIVE,
                f"no splat titled {request.title!r} on the bad commit in {ran} runs (seen: {seen})",
            )
        found[:] = [match]
    if not found:
        return finish(Exit.INCONCLUSIVE, f"no bug showed on the bad commit in {ran} runs")
    for target in found:
        hits = sum(1 for r in endpoint.results if classify(r, target).outcome == "reproduced")
        per_commit = request.runs or runs_needed(hits, ran)
        bugs.append(BugBisection(target, hits, ran, per_commit))
        why = (
            "--runs"
            if request.runs
            else f"a miss probability of at most {MISS_PROBABILITY:.0%} at rate {hits}/({ran}+1)"
        )
        say(f"bug: {target.title}: {hits}/{ran} on the bad commit; {per_commit} run(s) a commit")
        say(f"  ({why})")
    runs = max(bug.runs_per_commit for bug in bugs)
    ending, _ = b.test(good, "good endpoint", runs, lambda rs: _decided(bugs, rs))
    if not ending.built:
        raise PipelineError(f"the good commit {good[:12]} could not be built: {ending.unbuilt}", 3)
    live = []
    for bug in bugs:
        bug.use("bad endpoint", endpoint, False)
        verdict = bug.use("good endpoint", ending, False)
        if verdict == "bad":
            already.append(bug.title)
            say(f"bug: {bug.title}: the good commit has it too: not bisected")
        else:
            live.append(bug)
            if verdict == "skip":
                bug.result = f"the good commit could not be tested: {bug.steps[-1].why}"
    bugs[:] = live
    if not bugs:
        return finish(Exit.INCONCLUSIVE, f"the good commit already fails: {'; '.join(already)}")
    pending = [bug for bug in bugs if not bug.result]  # the good endpoint decided the rest
    for i, bug in enumerate(pending):
        _bisect_one(b, bug, pending[i:], request, repo, worktree, old, new)
    code = Exit.FOUND if all(bug.exit_code == Exit.FOUND for bug in bugs) else Exit.INCONCLUSIVE
    if len(bugs) == 1:
        return finish(code, bugs[0].result)
    said = "; ".join(
        bug.result if bug.exit_code == Exit.FOUND else f"{bug.title}: {bug.result}" for bug in bugs
    )
    return finish(code, f"{len(bugs)} bugs: {said}")


def _decided(bugs: list[BugBisection], results: list[ItemResult]) -> bool:
    return all(bug.decided(results) for bug in bugs)


def _bisect_one(
    b: Commits,
    bug: BugBisection,
    pending: list[BugBisection],
    request: BisectRequest,
    repo: Path,
    worktree: vcs.Worktree,
    old: str,
    new: str,
) -> None:
    """git bisect for ``bug``; each new commit is run for every bug still ``pending``."""
    say(f"bisecting: {bug.title}")
    terms = ("broken", "fixed") if request.fix else ("good", "bad")
    runs = max(p.runs_per_commit for p in pending)
    as_end = {"good": vcs.OLD, "bad": vcs.NEW}  # a fix bisection's good commit is its new end
    if request.fix:
        as_end = {"good": vcs.NEW, "bad": vcs.OLD}

    def decide(point: vcs.BisectPoint) -> str:
        role = f"step {point.step} of ~{point.step + point.steps_left}"
        tested, reused = b.test(point.commit, role, runs, lambda rs: _decided(pending, rs))
        verdict = bug.use(role, tested, reused)
        say(f"{role}: {point.commit[:12]}: {verdict}: {bug.steps[-1].why}")
        return as_end.get(verdict, vcs.SKIP)

    bisection = vcs.Bisection(worktree.path, old, new, terms)
    try:
        found = bisection.run(decide)
    finally:
        bug.log = bisection.log
        b.logs.append(f"# bug: {bug.title}\n{bug.log}\n")
        (b.out / "bisect.log").write_text("".join(b.logs))
    if found.first is None:
        names = [f"{c[:12]} {vcs.subject(repo, c)}" for c in found.candidates]
        bug.skipped = found.candidates
        bug.result = "inconclusive: the culprit is among skipped commits: " + "; ".join(names)
        return
    culprit = found.first
    seen = next((s for s in bug.steps if s.tested.commit == culprit), None)
    bug.culprit = {
        "commit": culprit,
        "subject": vcs.subject(repo, culprit),
        "author": vcs.git(repo, "log", "-1", "--format=%an <%ae>", culprit),
        "title": bug.title,
        "tested": seen.verdict if seen else "endpoint",
    }
    what = "fixed" if request.fix else "introduced"
    bug.exit_code = Exit.FOUND
    bug.result = f"{culprit[:12]} ({bug.culprit['subject']}) {what} {bug.title}"


def bisect_report_text(outcome: BisectOutcome) -> str:
    """bisect.md: the result, per bug its rate and the commits it was decided on, the
    tested commits, how to reproduce."""
    lines = [f"bisect {outcome.scenario}: {outcome.result}"]
    if outcome.already:
        lines.append(f"on the good commit too (not bisected): {'; '.join(outcome.already)}")
    if outcome.others:
        lines.append(
            f"other crashes seen (never counted as a reproduction): {'; '.join(outcome.others)}"
        )
    marks = "runs: X reproduced, . clean, o other crash, c cut short, e no verdict, - not run"
    for n, bug in enumerate(outcome.bugs, 1):
        lines += ["", f"bug {n}: {bug.title}", f"  {bug.result}"]
        lines.append(
            f"  rate on the bad commit: {bug.hits}/{bug.ran}; {bug.runs_per_commit} run(s) "
            f"per commit; commits ({marks}; build reused: the runs made for another bug):"
        )
        lines += [f"    {step.line()}" for step in bug.steps]
    lines += ["", "tested commits (built and run; every bug's runs at once):"]
    for t in outcome.tested:
        build = f"{t.build_s:.0f} s" if t.build_s is not None else "-"
        seen = "; ".join(t.titles()) or ("not built: " + t.unbuilt if not t.built else "clean")
        ran = sum(1 for r in t.results if r.status != "skipped")
        lines.append(f"  {t.role:<14} {t.commit[:12]} build {build:>6}  {ran} run(s): {seen}")
    lines += ["", "reproduce:", f"  {shlex.join(outcome.command)}"]
    lines += [f"  {t.role}: {t.repro}" for t in outcome.tested]
    return "\n".join(lines) + "\n"


def write_bisect(out: Path, outcome: BisectOutcome) -> None:
    """junit.xml (a testcase per bug, a failure when inconclusive), summary.json, bisect.md."""
    out.mkdir(parents=True, exist_ok=True)
    text = bisect_report_text(outcome)
    cases = []
    for bug in outcome.bugs or [None]:
        name = f"bisect {outcome.scenario}" + (f": {bug.title}" if bug else "")
        case = TestCase(name=name, classname="bisect", elapsed_sec=outcome.duration_s, stdout=text)
        code = bug.exit_code if bug else outcome.exit_code
        if code != 0:
            case.add_failure_info(
                message=bug.result if bug else outcome.result, failure_type="inconclusive"
            )
        cases.append(case)
    props = {"result": outcome.result}
    for n, bug in enumerate(outcome.bugs, 1):
        props[f"bug{n}_title"] = bug.title
        props[f"bug{n}_rate"] = f"{bug.hits}/{bug.ran}"
        if bug.culprit:
            props.update({f"bug{n}_culprit_{k}": str(v) for k, v in bug.culprit.items()})
    suite = TestSuite("lifetime-harness bisect", cases, properties=props)
    summary = {
        "command": outcome.command,
        "exit_code": outcome.exit_code,
        "result": outcome.result,
        "culprit": outcome.culprit,
        "bugs": [bug.to_json() for bug in outcome.bugs],
        "on_the_good_commit_too": outcome.already,
        "other_crashes": outcome.others,
        "duration_s": outcome.duration_s,
        "tested": [t.to_json() for t in outcome.tested],
    }
    report.write_files(out, suite, summary)
    paths.atomic_write(out / "bisect.md", text)

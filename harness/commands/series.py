"""`harness series`: run the same scenarios on a base and on base + series; say what changed.

Both sides are built in the repository's one harness worktree, base first and
then head, so the head build recompiles what the series touched and links;
each side is one ordinary `harness run` (commands.run.run_scenarios) into
``out/base`` and ``out/head``, with the same items and seeds. compare.py turns
the two sides' results into a verdict per scenario; where a fixed or
regressed verdict could still be luck (evidence.py), the side it rests on is
run more, with the next seeds, into ``out/<side>-more-N``.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from junit_xml import TestCase, TestSuite

from harness import compare, evidence, kcidb, lore, paths, report, stages, vcs
from harness.commands import run as run_command
from harness.commands.run import RunOutcome, RunRequest
from harness.progress import say
from harness.results import Item, ItemResult
from harness.scenario import Scenario
from harness.status import Exit, PipelineError

# Why 3: a lifetime race that reproduces in most runs is caught on one side
# and the other side's 3 clean runs make "fixed" more than luck, at a cost of
# 3 runs per side; a CI that gates on rare races raises it.
DEFAULT_REPEAT = 3


@dataclass(frozen=True)
class SeriesRequest(RunRequest):
    base: str = "HEAD"
    series: str | None = None  # mbox, thread mbox, message-id or directory of *.patch
    series_version: int | None = None  # which version of a thread's series (default: newest)
    head: str | None = None  # or a commit to compare with
    affected: bool = False  # only the scenarios whose covers meet the touched files


@dataclass
class SideInfo:
    name: str
    commit: str
    subject: str
    outcome: RunOutcome | None = None
    repro: str = ""
    more: list[MoreRuns] = field(default_factory=list)  # added for a verdict's evidence

    @property
    def results(self) -> list[ItemResult]:
        first = self.outcome.results if self.outcome else []
        return first + [r for m in self.more for r in m.results]

    @property
    def exit_codes(self) -> list[int]:
        return [o.exit_code for o in [self.outcome, *(m.outcome for m in self.more)] if o]

    def to_json(self) -> dict:
        build = (self.outcome.info.build or {}) if self.outcome else {}
        return {
            "commit": self.commit,
            "subject": self.subject,
            "exit_code": self.outcome.exit_code if self.outcome else None,
            "config_hash": build.get("config_hash"),
            "build_s": build.get("duration_s"),
            "objects_compiled": build.get("objects_compiled"),
            "harness_error": self.outcome.info.harness_error if self.outcome else None,
            "results": str(self.outcome.out) if self.outcome else None,
            "reproduce": self.repro,
            "more_runs": [m.to_json() for m in self.more],
        }


@dataclass
class MoreRuns:
    """Runs of one scenario added to a side after the first N, with the next seeds."""

    scenario: str
    why: str
    outcome: RunOutcome
    results: list[ItemResult]  # numbered on from the side's earlier runs

    def to_json(self) -> dict:
        return {
            "scenario": self.scenario,
            "why": self.why,
            "runs": len(self.results),
            "exit_code": self.outcome.exit_code,
            "results": str(self.outcome.out),
        }


@dataclass
class SeriesOutcome:
    comparisons: list[compare.Comparison]
    sides: list[SideInfo]
    out: Path
    exit_code: int
    command: list[str]
    repo: str = ""
    worktree: str = ""
    touched: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # scenario -> why
    duration_s: float = 0.0
    thread: lore.ThreadSeries | None = None  # the version b4 took from a mailing-list thread


def select(
    scenarios: list[Scenario], touched: list[str], affected: bool
) -> tuple[list[Scenario], dict[str, str]]:
    """--affected: the scenarios whose covers meet the touched files; the rest with why."""
    if not affected:
        return scenarios, {}
    chosen, left_out = [], {}
    for sc in scenarios:
        if not sc.covers:
            left_out[sc.name] = "it lists no covers"
        elif hits := sc.touched_by(touched):
            say(f"affected: {sc.name} (covers {', '.join(hits[:3])})")
            chosen.append(sc)
        else:
            left_out[sc.name] = f"covers none of the {len(touched)} touched file(s)"
    return chosen, left_out


def take_thread(request: SeriesRequest, out: Path) -> lore.ThreadSeries | None:
    """A thread mbox or message-id as --series: the version to apply, made ready by b4."""
    spec = request.series
    if spec is None or not (lore.is_message_id(spec) or lore.is_thread(Path(spec))):
        if request.series_version is not None:
            raise PipelineError("--series-version picks a version of a mail thread's series")
        return None
    try:
        thread = lore.take(spec, out / "thread", request.series_version)
    except lore.LoreError as exc:
        raise PipelineError(str(exc)) from exc
    say(f"series: {thread.describe()}")
    return thread


def _head_commit(
    request: SeriesRequest, worktree: vcs.Worktree, base: str, thread: lore.ThreadSeries | None
) -> str:
    if request.series:
        patches = [thread.mbox] if thread else vcs.series_files(Path(request.series))
        say(f"series: applying {len(patches)} file(s) with git am --3way on {base[:12]}")
        head = worktree.apply(base, patches)
        worktree.keep("series/head", head)
        return head
    assert request.head is not None
    return vcs.resolve(worktree.repo, request.head)


def run_series(request: SeriesRequest) -> SeriesOutcome:
    """Apply, build and run both sides, compare, and write the results."""
    started = time.monotonic()
    stages.install_signal_handlers()
    if request.repeat is None:
        request = replace(request, repeat=DEFAULT_REPEAT)
    scenarios = stages.load(request)
    out = Path(request.out_dir).resolve()
    command = run_command.invocation(request)
    thread = take_thread(request, out)  # bad input fails before the tree is touched
    repo = stages.open_repository(request)
    try:
        with vcs.worktree(repo) as worktree:
            if vcs.harness_owned(repo):  # its HEAD is where the last series left it
                vcs.restore_import(repo)
            base = vcs.resolve(repo, request.base)
            head = _head_commit(request, worktree, base, thread)
            outcome = SeriesOutcome([], [], out, Exit.PASS, command, str(repo), thread=thread)
            outcome.worktree = str(worktree.path)
            outcome.touched = vcs.changed_files(repo, base, head)
            say(f"series: {len(outcome.touched)} file(s) differ between base and head")
            selected, outcome.left_out = select(scenarios, outcome.touched, request.affected)
            for name, why in outcome.left_out.items():
                say(f"left out: {name}: {why}")
            names = [sc.name for sc in selected]
            paths = tuple(sc.path for sc in selected)
            for side, commit in (("base", base), ("head", head)):
                info = SideInfo(side, commit, vcs.subject(repo, commit))
                info.repro = run_command.commit_repro_command(
                    request, worktree.path, commit, names, request.repeat
                )
                outcome.sides.append(info)
            for info in outcome.sides if selected else []:
                say(f"{info.name}: {info.commit[:12]} {info.subject!r}")
                worktree.checkout(info.commit)
                side_request = replace(
                    request,
                    tree=str(worktree.path),
                    placed=True,
                    out_dir=str(out / info.name),
                    scenarios=paths,
                )
                info.outcome = run_command.run_scenarios(side_request)
                if info.outcome.exit_code == Exit.INTERRUPTED:
                    break
            outcome.comparisons = _compare(names, outcome.sides)
            if selected and Exit.INTERRUPTED not in _codes(outcome):
                outcome.comparisons = _more_evidence(request, worktree, outcome, selected)
    except vcs.ApplyError as exc:
        raise PipelineError(str(exc), Exit.BUILD) from exc
    except vcs.VcsError as exc:
        raise PipelineError(str(exc)) from exc
    outcome.exit_code = exit_code_for(outcome)
    outcome.duration_s = round(time.monotonic() - started, 1)
    _write_all(request, outcome)
    for line in compare.table(outcome.comparisons):
        say(line)
    say(f"series: {out}/report.md  {verdict_counts(outcome.comparisons)}")
    if nothing_tested(outcome):
        left = f"{len(outcome.left_out)} left out by --affected" if outcome.left_out else ""
        say(f"series: nothing was tested ({left or 'every selected scenario was skipped'})")
    return outcome


def _write_all(request: SeriesRequest, outcome: SeriesOutcome) -> None:
    write_series(outcome.out, outcome)
    if request.kcidb:
        _write_kcidb(request, outcome)


def _write_kcidb(request: SeriesRequest, outcome: SeriesOutcome) -> None:
    """Both sides' runs, added ones included; head's checkout carries the series."""
    files: tuple[Path, ...] = ()
    if outcome.thread:
        files = (outcome.thread.mbox,)
    elif request.series:
        files = tuple(vcs.series_files(Path(request.series)))
    thread = outcome.thread
    patchset = kcidb.Patchset(
        files,
        thread.message_id if thread else "",
        thread.subject if thread else "",
        thread.version if thread else None,
    )
    runs = []
    for side in outcome.sides:
        dirs = [side.outcome.out] if side.outcome else []
        dirs += [m.outcome.out for m in side.more]
        carried = patchset if side.name == "head" and files else None
        runs += [(d, carried) for d in dirs if (d / "summary.json").is_file()]
    run_command.write_kcidb(Path(request.kcidb), request.kcidb_origin, *runs)


def _compare(names: list[str], sides: list[SideInfo]) -> list[compare.Comparison]:
    base, head = sides
    return compare.compare_all(names, base.results, head.results)


def _codes(outcome: SeriesOutcome) -> list[int]:
    return [code for side in outcome.sides for code in side.exit_codes]


def _more_evidence(
    request: SeriesRequest,
    worktree: vcs.Worktree,
    outcome: SeriesOutcome,
    selected: list[Scenario],
) -> list[compare.Comparison]:
    """Run a side more wherever a fixed or regressed verdict could still be luck.

    Head first (the worktree is there), then base; each scenario's added runs
    stop at the first run that changes the verdict, and a verdict the added
    runs turn into another may ask for runs of its own (fixed turned
    regressed), so this goes round until nothing is asked for; every side
    stops at the bound, so it ends.
    """
    bound = max(evidence.MAX_RUNS, request.repeat or DEFAULT_REPEAT)
    by_name = {sc.name: sc for sc in selected}
    sides = {info.name: info for info in outcome.sides}
    names = [sc.name for sc in selected]
    comparisons = outcome.comparisons
    at = "head"
    while True:
        wanted = [(c, more) for c in comparisons if (more := compare.more_runs(c, bound))]
        if not wanted:
            return comparisons
        wanted.sort(key=lambda w: w[1][0] != at)  # the side checked out first
        for c, (side_name, count) in wanted:
            info = sides[side_name]
            if side_name != at:
                worktree.checkout(info.commit)
                at = side_name
            why = f"{c.verdict}, {c.evidence.text() if c.evidence else ''}: {count} more run(s)"
            say(f"{side_name}: {c.scenario}: {why}")
            added = _run_more(request, worktree, info, by_name[c.scenario], c, count, why)
            if added.outcome.exit_code == Exit.INTERRUPTED or not added.results:
                return _compare(names, outcome.sides)
        comparisons = _compare(names, outcome.sides)


def _run_more(
    request: SeriesRequest,
    worktree: vcs.Worktree,
    info: SideInfo,
    sc: Scenario,
    c: compare.Comparison,
    count: int,
    why: str,
) -> MoreRuns:
    """``count`` more runs of ``sc`` on the checked-out side, seeds following the earlier ones."""
    first = sum(1 for r in info.results if r.item.scenario.name == sc.name)
    seed = (sc.seed if request.seed is None else request.seed) + first

    def enough(finished: list[ItemResult]) -> str | None:
        changed = [r.item.id for r in finished if compare.changes_verdict(c, r)]
        return f"{changed[0]} changed the verdict" if changed else None

    more_request = replace(
        request,
        tree=str(worktree.path),
        placed=True,
        out_dir=str(Path(request.out_dir).resolve() / f"{info.name}-more-{len(info.more) + 1}"),
        scenarios=(sc.path,),
        repeat=count,
        seed=seed,
        enough=enough,
    )
    ran = run_command.run_scenarios(more_request)
    results = [_numbered_on(r, first) for r in ran.results if r.status != "skipped"]
    info.more.append(MoreRuns(sc.name, why, ran, results))
    return info.more[-1]


def _numbered_on(result: ItemResult, first: int) -> ItemResult:
    item = result.item
    rep = first + item.repetition
    return replace(result, item=Item(f"{item.scenario.name}#{rep}", item.scenario, rep, item.seed))


def verdict_counts(comparisons: list[compare.Comparison]) -> str:
    counts = [
        f"{verdict} {n}"
        for verdict in compare.VERDICTS
        if (n := sum(1 for c in comparisons if c.verdict == verdict))
    ]
    return ", ".join(counts) or "no scenario ran"


def exit_code_for(outcome: SeriesOutcome) -> int:
    """0 nothing regressed, 1 regressed, 3 a side did not build, 4 a scenario got no verdict,
    5 nothing was tested."""
    side_codes = _codes(outcome)
    if Exit.INTERRUPTED in side_codes:
        return Exit.INTERRUPTED
    if compare.regressed(outcome.comparisons):
        return Exit.FAIL
    if Exit.BUILD in side_codes:
        return Exit.BUILD
    if any(c.verdict == compare.ERROR for c in outcome.comparisons):
        return Exit.NO_VERDICT
    if nothing_tested(outcome):
        return Exit.NOTHING_RAN
    return Exit.PASS


def nothing_tested(outcome: SeriesOutcome) -> bool:
    """No scenario ran on both sides: --affected chose none, or every one was skipped."""
    return all(c.verdict == compare.SKIPPED for c in outcome.comparisons)


def _series_properties(outcome: SeriesOutcome) -> dict[str, str]:
    props = {"repository": outcome.repo, "worktree": outcome.worktree}
    if outcome.thread:
        props["series_version"] = str(outcome.thread.version)
        props["series_subject"] = outcome.thread.subject
        props["series_message_id"] = outcome.thread.message_id
    for side in outcome.sides:
        data = side.to_json()
        props[f"{side.name}_commit"] = side.commit
        props[f"{side.name}_subject"] = side.subject
        props[f"{side.name}_config_hash"] = str(data["config_hash"] or "(not built)")
        props[f"{side.name}_reproduce"] = side.repro
    return props


def _series_case(c: compare.Comparison) -> TestCase:
    case = TestCase(
        name=c.scenario,
        classname=f"series.{c.scenario}",
        stdout=c.line(),
        allow_multiple_subelements=True,
    )
    if c.verdict == "regressed":
        # regressed always has new bugs: a base without failures has none to match
        titles = "; ".join(b.title for b in c.new)
        text = "\n\n".join(b.splat.excerpt for b in c.new)
        case.add_failure_info(message=f"regressed: {titles}", output=text, failure_type="regressed")
    elif c.verdict == "error":
        case.add_error_info(message=f"could not run on {c.error_side}: {c.error}")
    return case


P_MEANS = (
    "p: the chance that the side without the bug still has it, at the rate the other side",
    "showed it (k failed runs of n counted as k/(n+1)), and passed every run by luck.",
    f"fixed needs p <= {evidence.MISS_PROBABILITY:.0%}: head is run more until it is, at most "
    f"{evidence.MAX_RUNS} runs (past that:",
    "likely fixed); a regression is confirmed by running base more, as far.",
)


def series_report_text(outcome: SeriesOutcome) -> str:
    """report.md: plain text fit to paste into a mailing-list reply or a merge request."""
    lines = [f"series: {outcome.thread.describe()}"] if outcome.thread else []
    for side in outcome.sides:
        lines.append(f'{side.name}: {side.commit[:12]} ("{side.subject}")')
    runs = min((min(c.base.n, c.head.n) for c in outcome.comparisons), default=0)
    header = f"Scenarios, {runs} run(s) per side with the same seeds (more where a verdict needed"
    lines += ["", header + " them):", ""]
    lines += [f"  {line}" for line in compare.table(outcome.comparisons)]
    for name, why in outcome.left_out.items():
        lines.append(f"  {name}: not run (--affected: {why})")
    if any(c.evidence for c in outcome.comparisons):
        lines += ["", *P_MEANS]
    added = [(side.name, more) for side in outcome.sides for more in side.more]
    if added:
        lines += ["", "Runs added:"]
        lines += [f"  {n}: {m.scenario}: {m.why}; ran {len(m.results)}" for n, m in added]
    for c in outcome.comparisons:
        for label, bugs in (("new on head", c.new), ("gone on head", c.gone)):
            for bug in bugs:
                seen = f"in {c.head.runs_with(bug)}/{c.head.n} head runs, {c.base.runs_with(bug)}"
                seen += f"/{c.base.n} base runs"
                lines += ["", f"{c.scenario}: {label}: {bug.title} ({seen})"]
                lines.append(report.trimmed(bug.splat.excerpt))
    lines += ["", "Reproduce:", f"  {shlex.join(outcome.command)}"]
    for side in outcome.sides:
        lines.append(f"  {side.name}: {side.repro}")
    return "\n".join(lines) + "\n"


def write_series(out: Path, outcome: SeriesOutcome) -> None:
    """The series' own junit.xml, summary.json and report.md, next to base/ and head/."""
    out.mkdir(parents=True, exist_ok=True)
    cases = [_series_case(c) for c in outcome.comparisons]
    for name, why in outcome.left_out.items():
        skipped = TestCase(name=name, classname=f"series.{name}")
        skipped.add_skipped_info(message=f"--affected: {why}")
        cases.append(skipped)
    suite = TestSuite("lifetime-harness series", cases, properties=_series_properties(outcome))
    summary = {
        "command": outcome.command,
        "exit_code": outcome.exit_code,
        "duration_s": outcome.duration_s,
        "repository": outcome.repo,
        "worktree": outcome.worktree,
        "touched": outcome.touched,
        "left_out": outcome.left_out,
        "thread": outcome.thread.to_json() if outcome.thread else None,
        "sides": {side.name: side.to_json() for side in outcome.sides},
        "scenarios": [c.to_json() for c in outcome.comparisons],
    }
    report.write_files(out, suite, summary)
    paths.atomic_write(out / "report.md", series_report_text(outcome))

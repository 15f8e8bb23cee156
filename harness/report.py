"""Results on disk: junit.xml (one testcase per scenario repetition) and summary.json.

Both are rewritten whenever the run's state changes, so an interrupted run
still leaves them, with the items that did not run marked as errors.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from junit_xml import TestCase, TestSuite, to_xml_report_string

from harness import evidence, paths
from harness.compare import Comparison, table
from harness.results import BootRecord, ItemResult

if TYPE_CHECKING:  # series.py and bisect.py write their results through this module
    from harness.bisect import BisectOutcome
    from harness.series import SeriesOutcome


@dataclass
class RunInfo:
    """Everything about the run that is not per scenario."""

    command: list[str]
    properties: dict[str, str] = field(default_factory=dict)
    build: dict | None = None
    repro: dict[str, str] = field(default_factory=dict)  # item id -> command
    duration_s: float = 0.0
    interrupted: bool = False
    harness_error: str | None = None
    shard: dict | None = None  # index, total and the whole plan, for `harness merge`


def _after_removal_text(threads: list[dict] | None) -> str:
    """Per thread, what the consumers did once their provider was gone ("" if never removed)."""
    if not threads:
        return ""
    done = ", ".join(f"{t['ops']} ok/{t['failed']} failed" for t in threads)
    return f", after the removal per thread: {done}"


def _stats_text(result: ItemResult, repro: str) -> str:
    lines = [f"reproduce: {repro}", f"console: {result.console}"]
    if result.first_splat_s is not None:
        lines.append(f"first splat {result.first_splat_s:g} s into the scenario (kernel time)")
    guest = result.guest or {}
    if guest:
        lines.append(
            f"cycles: {guest.get('cycles_done')}/{guest.get('cycles')}, "
            f"duration {guest.get('duration_s')} s, "
            f"taint {guest.get('taint_before')} -> {guest.get('taint_after')}, "
            f"slab growth {guest.get('slab_growth_kb')} kB"
        )
        for name, w in (guest.get("workers") or {}).items():
            lines.append(
                f"worker {name} ({w['type']}, {w['threads']} thread(s)): {w['ops']} ops "
                f"(min per cycle {w['min_cycle_ops']}), errors {w['errors'] or '{}'}, "
                f"ended with {w['end_errnos'] or '{}'}, longest op {w['longest_op_s']} s"
                + (f", {w['bytes']} bytes read" if w.get("bytes") else "")
                + (f", {w['bytes_verified']} verified" if w.get("bytes_verified") else "")
                + (
                    f", {w['files_cut_by_removal']} file read(s) cut by the removal"
                    if w.get("files_cut_by_removal")
                    else ""
                )
                + _after_removal_text(w.get("after_removal"))
            )
        for name, seen in (guest.get("identities") or {}).items():
            lines.append(f"fixture {name} came up as: {', '.join(seen)}")
        removal = [a for a in guest.get("actions", []) if a.get("latency_s") is not None]
        by_kind: dict[str, list[float]] = {}
        for action in removal:
            by_kind.setdefault(action["do"], []).append(action["latency_s"])
        for kind, values in by_kind.items():
            lines.append(
                f"action {kind}: {len(values)}x, max {max(values):.3f} s, "
                f"mean {sum(values) / len(values):.3f} s"
            )
        for action in guest.get("actions", []):
            if point := action.get("point"):
                lines.append(
                    f"cycle {action['cycle']}: {action['do']} {action['fixture']} at "
                    f"{point['point']} landed at byte {point['position_in_read']} of a "
                    f"{point['read_size']}-byte read ({point['counter']} +{point['count']})"
                )
    return "\n".join(lines)


def junit_suite(results: list[ItemResult], boots: list[BootRecord], info: RunInfo) -> TestSuite:
    cases = []
    for result in results:
        case = TestCase(
            name=result.item.id,
            classname=f"scenarios.{result.item.scenario.name}",
            elapsed_sec=result.duration_s,
            file=result.item.scenario.path,
            stdout=_stats_text(result, info.repro.get(result.item.id, "")),
            allow_multiple_subelements=True,
        )
        for splat in result.splats:
            count = f" (x{splat.count})" if splat.count > 1 else ""
            count += f" (outside the scenario: {splat.outside})" if splat.outside else ""
            case.add_failure_info(
                message=splat.title + count, output=splat.excerpt, failure_type=splat.kind
            )
        if result.violations:
            case.add_failure_info(
                message=f"{len(result.violations)} expectation(s) not met: {result.violations[0]}",
                output="\n".join(result.violations),
                failure_type="expectation",
            )
        if result.status == "skipped":
            case.add_skipped_info(message=result.error or "not run")
        elif result.error:
            case.add_error_info(message=result.error.splitlines()[0], output=result.error)
        cases.append(case)
    outside = [s for boot in boots for s in boot.outside_splats]
    if outside:
        case = TestCase(
            name="kernel log outside scenarios", classname="kernel", allow_multiple_subelements=True
        )
        for splat in outside:
            case.add_failure_info(
                message=splat.title, output=splat.excerpt, failure_type=splat.kind
            )
        cases.append(case)
    if info.harness_error or info.interrupted:
        case = TestCase(name="harness", classname="harness")
        case.add_error_info(
            message=info.harness_error or "interrupted", output=info.harness_error or ""
        )
        cases.append(case)
    return TestSuite("lifetime-harness", cases, properties=info.properties)


STATUSES = ("pass", "fail", "error", "skipped")


def status_counts(statuses: list[str]) -> dict[str, int]:
    """How many items have each status, every status listed (a summary's "counts")."""
    return {s: statuses.count(s) for s in STATUSES}


def write(out: Path, results: list[ItemResult], boots: list[BootRecord], info: RunInfo) -> None:
    out.mkdir(parents=True, exist_ok=True)
    suite = junit_suite(results, boots, info)
    paths.atomic_write(out / "junit.xml", to_xml_report_string([suite]))
    summary = {
        "command": info.command,
        "properties": info.properties,
        "build": info.build,
        "duration_s": info.duration_s,
        "interrupted": info.interrupted,
        "harness_error": info.harness_error,
        "shard": info.shard,
        "counts": status_counts([r.status for r in results]),
        "items": [
            {
                "id": r.item.id,
                "scenario": r.item.scenario.name,
                "status": r.status,
                "seed": r.item.seed,
                "repro": info.repro.get(r.item.id),
                "splats": [s.to_json() for s in r.splats],
                "violations": r.violations,
                "error": r.error,
                "boot": r.boot,
                "console": r.console,
                "duration_s": r.duration_s,
                "first_splat_s": r.first_splat_s,
                "guest": r.guest,
            }
            for r in results
        ],
        "boots": [
            {
                "index": b.index,
                "console": b.console,
                "cmdline": list(b.cmdline),
                "seconds_to_ready": b.seconds_to_ready,
                "ended": b.ended,
                "accel": b.accel,
                "why": b.why,
                "left_because": b.left_because,
                "ended_by": b.ended_by,
                "qemu_command": b.qemu_command,
                "splats_outside_scenarios": [s.to_json() for s in b.outside_splats],
            }
            for b in boots
        ],
    }
    paths.atomic_write(out / "summary.json", json.dumps(summary, indent=1))


# A splat excerpt in report.md: enough lines to recognise the bug in a mail.
EXCERPT_LINES = 14


_NOISE = re.compile(r"^\s*(?:\?\s|CPU: |Hardware name: |<TASK>|</TASK>|={10,})")


def _trimmed(excerpt: str, lines: int = EXCERPT_LINES) -> str:
    """The report's header and its reliable frames: no '? ' guesses, no CPU/BIOS lines."""
    kept = [line for line in excerpt.splitlines() if line.strip() and not _NOISE.match(line)]
    more = ""
    if len(kept) > lines:
        more = f"\n    [... {len(kept) - lines} more lines in the console log]"
    return "\n".join("    " + line for line in kept[:lines]) + more


def _series_properties(outcome: SeriesOutcome) -> dict[str, str]:
    props = {"repository": outcome.repo, "worktree": outcome.worktree}
    for side in outcome.sides:
        data = side.to_json()
        props[f"{side.name}_commit"] = side.commit
        props[f"{side.name}_subject"] = side.subject
        props[f"{side.name}_config_hash"] = str(data["config_hash"] or "(not built)")
        props[f"{side.name}_reproduce"] = side.repro
    return props


def _series_case(c: Comparison) -> TestCase:
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
    lines = []
    for side in outcome.sides:
        lines.append(f'{side.name}: {side.commit[:12]} ("{side.subject}")')
    runs = min((min(c.base.n, c.head.n) for c in outcome.comparisons), default=0)
    header = f"Scenarios, {runs} run(s) per side with the same seeds (more where a verdict needed"
    lines += ["", header + " them):", ""]
    lines += [f"  {line}" for line in table(outcome.comparisons)]
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
                lines.append(_trimmed(bug.splat.excerpt))
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
    paths.atomic_write(out / "junit.xml", to_xml_report_string([suite]))
    summary = {
        "command": outcome.command,
        "exit_code": outcome.exit_code,
        "duration_s": outcome.duration_s,
        "repository": outcome.repo,
        "worktree": outcome.worktree,
        "touched": outcome.touched,
        "left_out": outcome.left_out,
        "sides": {side.name: side.to_json() for side in outcome.sides},
        "scenarios": [c.to_json() for c in outcome.comparisons],
    }
    paths.atomic_write(out / "summary.json", json.dumps(summary, indent=1))
    paths.atomic_write(out / "report.md", series_report_text(outcome))


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
    paths.atomic_write(out / "junit.xml", to_xml_report_string([suite]))
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
    paths.atomic_write(out / "summary.json", json.dumps(summary, indent=1))
    paths.atomic_write(out / "bisect.md", text)

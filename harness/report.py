"""A run's results on disk: junit.xml (one testcase per scenario repetition) and
summary.json, written by `harness run` and `harness merge`; series and bisection
write their own files in their command modules with the helpers here.

Both are rewritten whenever the run's state changes, so an interrupted run
still leaves them, with the items that did not run marked as errors.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from junit_xml import TestCase, TestSuite, to_xml_report_string

from guest import protocol
from harness import paths
from harness.results import BootRecord, ItemResult


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
    guest = result.guest
    if guest is not None:
        lines.append(
            f"cycles: {guest.cycles_done}/{guest.cycles}, "
            f"duration {guest.duration_s} s, "
            f"taint {guest.taint_before} -> {guest.taint_after}, "
            f"slab growth {guest.slab_growth_kb} kB"
        )
        for name, w in guest.workers.items():
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
        for name, seen in guest.identities.items():
            lines.append(f"fixture {name} came up as: {', '.join(seen)}")
        removal = [a for a in guest.actions if a.get("latency_s") is not None]
        by_kind: dict[str, list[float]] = {}
        for action in removal:
            by_kind.setdefault(action["do"], []).append(action["latency_s"])
        for kind, values in by_kind.items():
            lines.append(
                f"action {kind}: {len(values)}x, max {max(values):.3f} s, "
                f"mean {sum(values) / len(values):.3f} s"
            )
        for action in guest.actions:
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
        elif result.error and result.status == "error":
            case.add_error_info(message=result.error.splitlines()[0], output=result.error)
        elif result.error:  # failed by a kernel report; what it kept from finishing
            case.add_failure_info(
                message=result.error.splitlines()[0], output=result.error, failure_type="cut-short"
            )
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


_ATTENTION = {"fail": 0, "error": 1, "pass": 2, "skipped": 3}


def table(results: list[ItemResult]) -> list[str]:
    """The end-of-run table, what needs attention first: item, verdict, seconds, boot and
    the distinct report titles (or why there is no verdict, or the first broken
    expectation of a failure without a kernel report)."""
    rows = [("item", "verdict", "time", "boot", "reports")]
    for r in sorted(results, key=lambda r: _ATTENTION.get(r.status, 9)):
        titles = list(dict.fromkeys(s.title for s in r.splats))
        why = r.error.splitlines()[0] if r.status == "error" and r.error else ""
        broken = r.violations[0].splitlines()[0] if r.violations else ""
        reports = "; ".join(titles) or why or broken
        time_s = f"{r.duration_s:.1f} s" if r.duration_s else "-"
        rows.append((r.item.id, r.status.upper(), time_s, str(r.boot or "-"), reports))
    widths = [max(len(row[c]) for row in rows) for c in range(4)]
    lines = []
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)]
        lines.append("  ".join([*cells, row[4]]).rstrip())
    return lines


def status_counts(statuses: list[str]) -> dict[str, int]:
    """How many items have each status, every status listed (a summary's "counts")."""
    return {s: statuses.count(s) for s in STATUSES}


def write_files(out: Path, suite: TestSuite, summary: dict) -> None:
    """A command's junit.xml and summary.json, each replaced whole (never half-written)."""
    out.mkdir(parents=True, exist_ok=True)
    paths.atomic_write(out / "junit.xml", to_xml_report_string([suite]))
    paths.atomic_write(out / "summary.json", json.dumps(summary, indent=1))


def write(out: Path, results: list[ItemResult], boots: list[BootRecord], info: RunInfo) -> None:
    suite = junit_suite(results, boots, info)
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
                "guest": protocol.to_json(r.guest) if r.guest else None,
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
    write_files(out, suite, summary)


# A splat excerpt in report.md: enough lines to recognise the bug in a mail.
EXCERPT_LINES = 14


_NOISE = re.compile(r"^\s*(?:\?\s|CPU: |Hardware name: |<TASK>|</TASK>|={10,})")


def trimmed(excerpt: str, lines: int = EXCERPT_LINES) -> str:
    """The report's header and its reliable frames: no '? ' guesses, no CPU/BIOS lines."""
    kept = [line for line in excerpt.splitlines() if line.strip() and not _NOISE.match(line)]
    more = ""
    if len(kept) > lines:
        more = f"\n    [... {len(kept) - lines} more lines in the console log]"
    return "\n".join("    " + line for line in kept[:lines]) + more

"""`harness merge`: one junit.xml and one summary.json from the result directories of shards.

Each shard's summary.json carries the whole plan (item id -> shard), so the
merge knows what every shard should have reported: an item no directory
reported (its shard died, was cancelled, uploaded nothing) becomes an error
testcase naming the shard, never a silent gap in a green pipeline. Testcases
are copied from the shards' junit.xml as they are, each with the shard it
came from.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from harness import paths, pipeline, report
from harness.progress import say

SUITE = "lifetime-harness"


class MergeError(Exception):
    """The directories cannot be merged (not shards of one run); the message says why."""


@dataclass
class ShardDir:
    path: Path
    summary: dict
    junit: ET.Element | None  # the shard's <testsuite>, if its junit.xml is readable

    @property
    def label(self) -> str:
        s = self.summary["shard"]
        return f"{s['index']}/{s['total']}"


@dataclass
class Merged:
    items: list[dict]
    cases: list[ET.Element]
    properties: dict[str, str]
    shards: list[dict]
    problems: list[str] = field(default_factory=list)  # said on the console and in the summary
    outside_splats: int = 0  # kernel reports no item could take: they fail the run

    @property
    def counts(self) -> dict[str, int]:
        return report.status_counts([i["status"] for i in self.items])

    @property
    def exit_code(self) -> int:
        statuses = [i["status"] for i in self.items]
        return pipeline.exit_code_for_statuses(statuses, self.outside_splats)


def read_shard(path: Path) -> ShardDir | None:
    """A shard's results; None for a directory with no summary.json (a shard that died)."""
    summary_file = path / "summary.json"
    if not path.is_dir():
        raise MergeError(f"{path}: no such directory")
    if not summary_file.exists():
        return None
    try:
        summary = json.loads(summary_file.read_text())
    except (OSError, ValueError) as exc:
        raise MergeError(
            f"{summary_file}: unreadable ({exc}); was it written by harness run?"
        ) from exc
    if not isinstance(summary, dict) or not summary.get("shard"):
        raise MergeError(
            f"{summary_file}: not the result of a sharded run (harness run --shard K/N)"
        )
    try:
        junit = ET.parse(path / "junit.xml").getroot().find("testsuite")
    except (OSError, ET.ParseError):
        junit = None
    return ShardDir(path, summary, junit)


def _check_same_run(shards: list[ShardDir]) -> dict[str, int]:
    """The one plan all shards share; refuse shards of different runs or kernels."""
    first = shards[0]
    plan = first.summary["shard"]["plan"]
    seen: dict[str, Path] = {}
    for s in shards:
        if s.summary["shard"]["plan"] != plan:
            raise MergeError(
                f"{s.path} and {first.path} are shards of different runs (their plans differ: "
                "other scenarios, --repeat, or shard count)"
            )
        if s.label in seen:
            raise MergeError(f"shard {s.label} given twice: {seen[s.label]} and {s.path}")
        seen[s.label] = s.path
        kernel = (s.summary.get("properties") or {}).get("config_hash")
        first_kernel = (first.summary.get("properties") or {}).get("config_hash")
        if kernel and first_kernel and kernel != first_kernel:
            raise MergeError(
                f"{s.path} ran a kernel of config {kernel}, {first.path} one of {first_kernel}: "
                "shards of one run boot one artifact"
            )
    return plan


def _properties(shards: list[ShardDir]) -> dict[str, str]:
    """Properties all shards agree on as they are; others as 'K/N: value; ...'."""
    keys = dict.fromkeys(k for s in shards for k in (s.summary.get("properties") or {}))
    out = {}
    for key in keys:
        if key == "shard":
            continue
        values = {s.label: (s.summary.get("properties") or {}).get(key) for s in shards}
        distinct = {v for v in values.values() if v is not None}
        out[key] = (
            distinct.pop()
            if len(distinct) == 1
            else "; ".join(f"{k}: {v}" for k, v in values.items() if v is not None)
        )
    return out


def _case_from(shard: ShardDir, name: str) -> ET.Element | None:
    if shard.junit is None:
        return None
    for case in shard.junit.iter("testcase"):
        if case.get("name") == name:
            return case
    return None


def _tag(case: ET.Element, shard: ShardDir, rename: bool = False) -> ET.Element:
    """The testcase with the shard it came from (a property and its output's first line)."""
    if rename:
        case.set("name", f"{case.get('name')} (shard {shard.label})")
    props = ET.Element("properties")
    ET.SubElement(props, "property", name="shard", value=shard.label)
    ET.SubElement(props, "property", name="shard_results", value=str(shard.path))
    case.insert(0, props)
    out = case.find("system-out")
    if out is None:
        out = ET.SubElement(case, "system-out")
    out.text = f"shard: {shard.label} ({shard.path})\n{out.text or ''}"
    return case


def _missing_case(item_id: str, label: str) -> ET.Element:
    case = ET.Element("testcase", name=item_id, classname="harness.merge")
    message = f"no shard reported it: shard {label} left no results (it died, was cancelled, "
    message += "or its results were not passed to harness merge)"
    ET.SubElement(case, "error", message=message, type="error").text = message
    return case


def merge(dirs: list[Path]) -> tuple[Merged, list[ShardDir]]:
    read = [(d, read_shard(d)) for d in dirs]
    shards = [s for _, s in read if s is not None]
    problems = [
        f"{d}: no summary.json (a shard that died before writing results?)"
        for d, s in read
        if s is None
    ]
    if not shards:
        raise MergeError(
            "no shard results to merge: none of "
            + ", ".join(map(str, dirs))
            + " has a summary.json"
        )
    plan = _check_same_run(shards)
    total = shards[0].summary["shard"]["total"]
    by_index = {s.summary["shard"]["index"]: s for s in shards}
    items, cases = [], []
    for item_id, index in plan.items():
        shard = by_index.get(index)
        reported = None
        if shard is not None:
            reported = next((i for i in shard.summary["items"] if i["id"] == item_id), None)
        label = f"{index}/{total}"
        if reported is None:
            why = f"no shard reported it (shard {label} left no results)"
            if shard is not None:
                why = f"shard {label} ran but did not report it"
            items.append({"id": item_id, "status": "error", "error": why, "shard": index})
            problems.append(f"{item_id}: {why}")
            cases.append(_missing_case(item_id, label))
            continue
        items.append({**reported, "shard": index})
        case = _case_from(shard, item_id)
        cases.append(_tag(case, shard) if case is not None else _missing_case(item_id, label))
    for shard in shards:  # the kernel log outside scenarios, harness errors: once per shard
        for case in shard.junit.iter("testcase") if shard.junit is not None else ():
            if case.get("name") not in plan:
                cases.append(_tag(case, shard, rename=True))
    summaries = []
    for index in range(1, total + 1):
        shard = by_index.get(index)
        summaries.append(
            {
                "index": index,
                "results": str(shard.path) if shard else None,
                "duration_s": shard.summary.get("duration_s") if shard else None,
                "expected_s": shards[0].summary["shard"].get("expected_s", {}).get(str(index)),
                "harness_error": shard.summary.get("harness_error") if shard else "no results",
                "interrupted": shard.summary.get("interrupted") if shard else None,
                "counts": shard.summary.get("counts") if shard else None,
            }
        )
    outside = sum(
        len(boot.get("splats_outside_scenarios", []))
        for shard in shards
        for boot in shard.summary.get("boots", [])
    )
    return Merged(items, cases, _properties(shards), summaries, problems, outside), shards


def _suite(merged: Merged) -> ET.Element:
    def count(tag: str) -> int:
        return sum(1 for c in merged.cases if c.find(tag) is not None)

    suite = ET.Element(
        "testsuite",
        name=SUITE,
        tests=str(len(merged.cases)),
        failures=str(count("failure")),
        errors=str(count("error")),
        skipped=str(count("skipped")),
        time=str(round(sum(float(c.get("time") or 0) for c in merged.cases), 3)),
    )
    props = ET.SubElement(suite, "properties")
    for key, value in {**merged.properties, "shards": str(len(merged.shards))}.items():
        ET.SubElement(props, "property", name=key, value=value)
    suite.extend(merged.cases)
    return suite


def write(out: Path, merged: Merged, shards: list[ShardDir], command: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    root = ET.Element("testsuites")
    root.append(_suite(merged))
    ET.indent(root)
    paths.atomic_write(
        out / "junit.xml", ET.tostring(root, encoding="unicode", xml_declaration=True)
    )
    boots = [
        {**b, "shard": s.summary["shard"]["index"]}
        for s in shards
        for b in s.summary.get("boots", [])
    ]
    summary = {
        "command": command,
        "properties": merged.properties,
        "exit_code": merged.exit_code,
        "problems": merged.problems,
        "shards": merged.shards,
        "counts": merged.counts,
        "items": merged.items,
        "boots": boots,
    }
    paths.atomic_write(out / "summary.json", json.dumps(summary, indent=1))


def run_merge(dirs: list[Path], out: Path, command: list[str]) -> int:
    """Merge, write, say what is missing; the exit status is the one `harness run` would give."""
    out = out.resolve()
    if any(d.resolve() == out for d in dirs):
        raise MergeError(f"--out {out} is one of the shard directories: merge into another")
    merged, shards = merge(dirs)
    write(out, merged, shards, command)
    for problem in merged.problems:
        say(f"merge: {problem}")
    said = ", ".join(f"{k} {v}" for k, v in merged.counts.items() if v or k != "skipped")
    if merged.outside_splats:
        said += f", kernel reports outside every item {merged.outside_splats} (a failure)"
    say(f"merged {len(shards)} of {len(merged.shards)} shard(s): {out}/junit.xml  {said}")
    return merged.exit_code

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

from harness import paths, report, textfile
from harness import shard as shard_mod
from harness.commands import run as run_command
from harness.progress import say

SUITE = "lifetime-harness"


class MergeError(Exception):
    """The directories cannot be merged (not shards of one run); the message says why."""


@dataclass
class ShardDir:
    path: Path
    summary: dict
    junit: ET.Element | None  # the shard's <testsuite>, if its junit.xml is readable
    junit_problem: str = ""  # why it is not: its testcases are lost

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
        return run_command.exit_code_for_statuses(statuses, self.outside_splats)


# What names the kernel a shard booted: shards of one run boot one build of one tree.
KERNEL_PROPERTIES = ("tree_commit", "kernel_artifact_sha256", "config_hash")


def _shard_problem(part: object) -> str | None:
    """What makes a summary's "shard" not the record of `harness run --shard K/N`, or None."""
    if not isinstance(part, dict):
        return "'shard' is empty: not the result of a sharded run (harness run --shard K/N)"
    index, total, plan = part.get("index"), part.get("total"), part.get("plan")
    if not (isinstance(total, int) and isinstance(index, int) and 1 <= index <= total):
        return "'shard' has no valid 'index' and 'total' (1 <= index <= total)"
    if not isinstance(plan, dict) or not plan:
        return "'shard' has no 'plan' (item id -> shard), which every sharded run writes"
    if not all(isinstance(k, int) and 1 <= k <= total for k in plan.values()):
        return f"'shard.plan' maps an item to no shard of 1..{total}"
    if not isinstance(part.get("expected_s", {}), dict):
        return "'shard.expected_s' is not a JSON object"
    return None


def _read_junit(path: Path) -> tuple[ET.Element | None, str]:
    """The shard's <testsuite>, or why there is none."""
    try:
        data = textfile.read_bytes(path, "junit.xml")
        suite = ET.fromstring(data).find("testsuite")
    except textfile.TextFileError as exc:
        return None, exc.message
    except ET.ParseError as exc:
        return None, f"is not XML ({exc})"
    if suite is None:
        return None, "has no <testsuite>"
    return suite, ""


def read_shard(path: Path) -> ShardDir | None:
    """A shard's results; None for a directory with no summary.json (a shard that died)."""
    summary_file = path / "summary.json"
    if not path.is_dir():
        raise MergeError(f"{path}: no such directory")
    if not summary_file.exists():
        return None
    try:
        summary = shard_mod.read_summary(summary_file)
    except textfile.TextFileError as exc:
        raise MergeError(str(exc)) from exc
    problem = _shard_problem(summary.get("shard"))
    if not isinstance(summary.get("properties", {}), dict):
        problem = "'properties' is not a JSON object"
    if problem:
        raise MergeError(f"{summary_file}:1: {problem}: {shard_mod.SUMMARY_WRITER}")
    junit, junit_problem = _read_junit(path / "junit.xml")
    return ShardDir(path, summary, junit, junit_problem)


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
        for key in KERNEL_PROPERTIES:
            mine, theirs = _property(s, key), _property(first, key)
            if mine and theirs and mine != theirs:
                raise MergeError(
                    f"{s.path} ran a kernel of {key} {mine}, {first.path} one of {theirs}: "
                    "shards of one run boot one kernel (one `harness build --artifact`); "
                    "merge the shards of one run only"
                )
    return plan


def _property(shard: ShardDir, key: str) -> str | None:
    properties = shard.summary.get("properties")
    return properties.get(key) if isinstance(properties, dict) else None


def _properties(shards: list[ShardDir]) -> dict[str, str]:
    """Properties all shards agree on as they are; others as 'K/N: value; ...'."""
    keys = dict.fromkeys(k for s in shards for k in (s.summary.get("properties") or {}))
    out = {}
    for key in keys:
        if key == "shard":
            continue
        values = {s.label: _property(s, key) for s in shards}
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


def _missing_case(item_id: str, message: str) -> ET.Element:
    """An error testcase for an item whose result no shard gave."""
    case = ET.Element("testcase", name=item_id, classname="harness.merge")
    ET.SubElement(case, "error", message=message, type="error").text = message
    return case


def _unreported(shard: ShardDir | None, label: str, reported: dict | None) -> str:
    """Why the item has no result to merge; "" when it has one."""
    if shard is None:
        return (
            f"no shard reported it: shard {label} left no results (it died, was cancelled, "
            "or its results were not passed to harness merge)"
        )
    if reported is None:
        return f"shard {label} ran but did not report it"
    if shard.junit is None:
        return (
            f"shard {label}'s junit.xml {shard.junit_problem}: its testcase is lost (the "
            f"summary says {reported['status']}); pass the directory the shard wrote, whole"
        )
    if _case_from(shard, reported["id"]) is None:
        return f"shard {label}'s junit.xml has no testcase for it, its summary.json has"
    return ""


def merge(dirs: list[Path]) -> tuple[Merged, list[ShardDir]]:
    read = [(d, read_shard(d)) for d in dirs]
    shards = [s for _, s in read if s is not None]
    problems = [
        f"{d}: no summary.json (a shard that died before writing results?)"
        for d, s in read
        if s is None
    ]
    problems += [f"{s.path}/junit.xml {s.junit_problem}" for s in shards if s.junit is None]
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
        if why := _unreported(shard, f"{index}/{total}", reported):
            items.append({"id": item_id, "status": "error", "error": why, "shard": index})
            problems.append(f"{item_id}: {why}")
            cases.append(_missing_case(item_id, why))
            continue
        assert shard is not None and reported is not None
        items.append({**reported, "shard": index})
        cases.append(_tag(_case_from(shard, item_id), shard))
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

"""Plan a run from measured durations: N shards that end at about the same time, and
an order within each boot that saves reboots.

CI engines fan jobs out (GitLab ``parallel:``, a GitHub Actions matrix); every
job runs ``harness run --shard K/N`` with the same arguments and must come to the
same split without talking to the others. So the split depends only on the
item list and on ``scenarios/durations.json`` (measured seconds per scenario
and per boot, under TCG and KVM), never on the machine: longest items first,
each to the shard that ends earliest with it, counting a boot for each command
line a shard must boot and for each scenario that ends its boot.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from harness import paths, textfile
from harness.results import Item

DURATIONS_FILE = paths.SCENARIOS_DIR / "durations.json"
# Seconds assumed for a scenario the table has not measured, and for a boot with no figure.
UNKNOWN_SCENARIO_S = 30.0
UNKNOWN_BOOT_S = 30.0
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as CI_NODE_INDEX
    total: int

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"


def parse(text: str) -> Shard:
    """'K/N' with 1 <= K <= N (GitLab's CI_NODE_INDEX/CI_NODE_TOTAL)."""
    m = _SPEC.match(text)
    if not m:
        raise ValueError(f"{text!r} is not K/N (e.g. 2/4: the second of four shards)")
    index, total = int(m.group(1)), int(m.group(2))
    if total < 1 or not 1 <= index <= total:
        raise ValueError(f"{text!r}: K must be 1..N (shards count from 1, as CI_NODE_INDEX)")
    return Shard(index, total)


@dataclass(frozen=True)
class Timing:
    """Expected seconds under one accelerator."""

    boot_s: float
    scenarios: dict[str, dict]  # name -> {"duration_s", "ends_boot", "runs"}

    def ends_boot(self, scenario: str) -> bool:
        return bool(self.scenarios.get(scenario, {}).get("ends_boot"))

    def cost(self, scenario: str) -> float:
        entry = self.scenarios.get(scenario)
        if entry is None:
            return UNKNOWN_SCENARIO_S
        return float(entry["duration_s"]) + (self.boot_s if self.ends_boot(scenario) else 0.0)


def table_accel(requested: str) -> str:
    """The table a request splits by. 'auto' learns its accelerator only from each job's
    own probe, and every job must split alike, so it splits by the TCG figures."""
    return "kvm" if requested == "kvm" else "tcg"


SUMMARY_WRITER = "pass a summary.json that harness run or harness merge wrote"
# What every summary's items and boots carry (report.write, merge.write), and what an
# item with a verdict carries besides: all measured() and merge read.
_ENTRY_FIELDS = {
    "items": {"id": (str,), "status": (str,)},
    "boots": {"index": (int,), "accel": (str,)},
}
_VERDICT_FIELDS = {"scenario": (str,), "duration_s": (int, float)}
_OPTIONAL_FIELDS = {"items": {}, "boots": {"splats_outside_scenarios": (list,)}}


def summary_problem(summary: dict) -> str | None:
    """What makes ``summary`` not a run's summary.json (the field named), or None."""
    for key, fields in _ENTRY_FIELDS.items():
        entries = summary.get(key, [])
        if not isinstance(entries, list):
            return f"'{key}' is not a JSON array"
        for n, entry in enumerate(entries):
            if not isinstance(entry, dict):
                return f"{key}[{n}] is not a JSON object"
            need = fields
            if key == "items" and entry.get("status") in ("pass", "fail"):
                need = {**fields, **_VERDICT_FIELDS}
            for name, kinds in need.items():
                value = entry.get(name)
                if not isinstance(value, kinds) or isinstance(value, bool):
                    return f"{key}[{n}] has no valid '{name}'"
            for name, kinds in _OPTIONAL_FIELDS[key].items():
                if name in entry and not isinstance(entry[name], kinds):
                    return f"{key}[{n}] has no valid '{name}'"
    return None


def read_summary(path: Path) -> dict:
    """A run's summary.json, checked for what a reader of its items and boots needs."""
    summary = textfile.read_json_object(path, "summary.json", SUMMARY_WRITER)
    if problem := summary_problem(summary):
        raise textfile.TextFileError(path, 1, f"{problem}: {SUMMARY_WRITER}")
    return summary


def load_durations(path: Path = DURATIONS_FILE) -> dict:
    """The table (empty if there is none yet); ValueError says what is wrong with it."""
    if not path.exists():
        return {}
    writer = "restore it from git, or delete it and refresh it with harness durations"
    try:
        table = textfile.read_json_object(path, "durations table", writer)
    except textfile.TextFileError as exc:
        raise ValueError(str(exc)) from exc
    for accel in ("tcg", "kvm"):
        if not isinstance(table.get(accel, {}), dict):
            raise ValueError(f"{path}:1: '{accel}' is not a JSON object: {writer}")
    return table


def timing(durations: dict, accel: str) -> Timing:
    """The accelerator's figures; a KVM table nobody measured borrows TCG's ratios."""
    entry = durations.get(accel) or durations.get("tcg") or {}
    return Timing(float(entry.get("boot_s") or UNKNOWN_BOOT_S), dict(entry.get("scenarios", {})))


def assign(
    items: list[Item], total: int, times: Timing, free: frozenset[str] = frozenset()
) -> dict[str, int]:
    """Item id -> shard index (1-based): longest first (with its share of a boot), each
    where it ends earliest. Items of ``free`` scenarios (skipped on this kernel: an API its
    tree lacks) cost nothing and boot nothing."""
    loads = [0.0] * total
    cmdlines: list[set[tuple[str, ...]]] = [set() for _ in range(total)]
    sharing = Counter(i.scenario.cmdline for i in items if i.scenario.name not in free)

    def cost(item: Item) -> float:
        return 0.0 if item.scenario.name in free else times.cost(item.scenario.name)

    def weight(item: Item) -> float:
        # an item of a rare command line carries more of its boot: place it early
        if item.scenario.name in free:
            return 0.0
        return cost(item) + times.boot_s / sharing[item.scenario.cmdline]

    def end(k: int, item: Item) -> float:
        free_boot = item.scenario.name in free or item.scenario.cmdline in cmdlines[k]
        return loads[k] + (0.0 if free_boot else times.boot_s) + cost(item)

    plan = {}
    for item in sorted(items, key=lambda i: (-weight(i), i.id)):
        best = min(range(total), key=lambda k: (end(k, item), k))
        loads[best] = end(best, item)
        if item.scenario.name not in free:
            cmdlines[best].add(item.scenario.cmdline)
        plan[item.id] = best + 1
    return plan


def boot_order(items: list[Item], times: Timing) -> list[Item]:
    """Items measured to end their boot (a crash, a taint) after the others, order kept
    otherwise: then each boot-ending item costs one boot, where one that runs first
    costs a reboot for everything behind it."""
    return sorted(items, key=lambda i: times.ends_boot(i.scenario.name))


def expected_seconds(items: list[Item], times: Timing, free: frozenset[str] = frozenset()) -> float:
    """What a run of ``items`` is expected to take: boots per command line plus the items."""
    ran = [i for i in items if i.scenario.name not in free]
    boots = len({i.scenario.cmdline for i in ran}) * times.boot_s
    return boots + sum(times.cost(i.scenario.name) for i in ran)


def measured(summaries: list[dict]) -> dict[str, dict]:
    """Per accelerator, the figures of finished runs: mean seconds per scenario (items
    with a verdict only; a later summary's figure for a scenario replaces an earlier
    one's, as after a change to it), whether it ended its boot, and the median seconds
    to 'ready' over all their boots."""
    out: dict[str, dict] = {}
    readies: dict[str, list[float]] = {}
    for summary in summaries:
        durations: dict[tuple[str, str], list[float]] = {}
        ends: set[tuple[str, str]] = set()
        boots = {(b.get("shard"), b["index"]): b for b in summary.get("boots", [])}
        for boot in boots.values():
            if boot.get("seconds_to_ready") is not None:
                readies.setdefault(boot["accel"], []).append(boot["seconds_to_ready"])
        for item in summary.get("items", []):
            boot = boots.get((item.get("shard"), item.get("boot")))
            if item["status"] not in ("pass", "fail") or boot is None:
                continue
            key = (boot["accel"], item["scenario"])
            durations.setdefault(key, []).append(item["duration_s"])
            if boot.get("ended_by") == item["id"]:
                ends.add(key)
        for (accel, scenario), values in sorted(durations.items()):
            entry = out.setdefault(accel, {"scenarios": {}})
            entry["scenarios"][scenario] = {
                "duration_s": round(statistics.mean(values), 1),
                "ends_boot": (accel, scenario) in ends,
                "runs": len(values),
            }
    for accel, values in readies.items():
        out.setdefault(accel, {"scenarios": {}})["boot_s"] = round(statistics.median(values), 1)
    return out


def refreshed(old: dict, new: dict) -> dict:
    """The table with ``new``'s figures replacing old ones; scenarios not measured stay."""
    table = {k: v for k, v in old.items() if k not in ("tcg", "kvm")}
    table.setdefault(
        "about",
        "Measured seconds per scenario (one repetition) and per boot to 'ready', under each "
        "accelerator; harness run --shard balances shards with them. Refresh: "
        "harness durations results/summary.json",
    )
    for accel in ("tcg", "kvm"):
        entry = dict(old.get(accel) or {})
        scenarios = dict(entry.get("scenarios") or {})
        fresh = new.get(accel) or {}
        scenarios.update(fresh.get("scenarios") or {})
        if "boot_s" in fresh:
            entry["boot_s"] = fresh["boot_s"]
        if scenarios:
            entry["scenarios"] = dict(sorted(scenarios.items()))
            table[accel] = entry
    return table

"""Mutation benchmark: how many small, realistic lifetime bugs the shipped scenarios catch.

Each patch in benchmarks/mutants/ injects one bug into the default 6.12 tree
(its commit message says what it breaks and its class). For each mutant the
harness's worktree is put at base + mutant (an incremental build), the
scenarios whose ``covers:`` meet the patched file run once (a screen; every
scenario for a sample of mutants, to measure that selection), and the
fastest scenario that caught it runs ``--runs`` more times with fresh seeds,
stopping once it can no longer catch it in all but one run. The control is
the base tree in the same invocation (``--base-runs`` runs of every scenario
a mutant is screened with): a scenario that fails on base catches a mutant
only with a bug base does not show (the rule ``harness series`` uses).

A mutant counts as caught when one scenario caught it within
``WITHIN_S`` seconds of scenario time in at least ``runs - 1`` of ``runs``.
Results are kept per mutant in the harness cache and in the committed
mutants.json (keyed by the patch, the base commit and the scenarios' files,
not by the harness's own code), so a long benchmark resumes where it
stopped, on this machine or a new one; --fresh runs again. Writes
benchmarks/mutants.json and the table in benchmarks/mutants/README.md.

    .venv/bin/python benchmarks/mutants.py [--runs 20] [--base-runs 2] [--sample 4]
        [--only NAME ...] [--again NAME ...] [--fresh] [--report-only]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import compare, paths, stages, vcs  # noqa: E402
from harness.commands import run as run_command  # noqa: E402
from harness.commands import series as series_command  # noqa: E402
from harness.commands.run import RunRequest  # noqa: E402
from harness.progress import say  # noqa: E402
from harness.results import ItemResult  # noqa: E402
from harness.scenario import Scenario  # noqa: E402
from harness.splats import Splat  # noqa: E402
from harness.status import Exit  # noqa: E402

MUTANTS = ROOT / "benchmarks" / "mutants"
JSON = ROOT / "benchmarks" / "mutants.json"
TABLE = MUTANTS / "README.md"
WHY_MISSED = MUTANTS / "why-missed.json"  # mutant -> why no scenario caught it (written by hand)
WITHIN_S = 60.0  # scenario time to the first report that a catch may take
CLASSES = {
    "freed-before-unregister": "memory freed in remove() or by devres before unregistering",
    "refcount": "a missing get or an extra put",
    "not-drained": "in-flight operations not drained before teardown",
    "hang": "a removal that waits for users that never leave",
    "leak-per-cycle": "a reference, id or memory leaked per plug cycle",
    "left-behind": "a work item, timer, notifier or file left behind after remove",
    "used-after-gone": "a descriptor or handle used after its provider is gone",
}


@dataclass(frozen=True)
class Mutant:
    name: str
    patch: Path
    subject: str
    cls: str
    files: tuple[str, ...]
    functions: tuple[str, ...]  # the functions its hunks change


def parse_mutant(patch: Path) -> Mutant:
    """A mutant from its format-patch file: subject, class line, files, changed functions."""
    text = patch.read_text()
    subject = re.search(r"^Subject: \[PATCH[^\]]*\] (.*(?:\n .*)*)", text, re.M)
    cls = re.search(r"^Class: ([a-z-]+)\.$", text, re.M)
    if not subject or not cls or cls.group(1) not in CLASSES:
        raise SystemExit(f"{patch}: needs a Subject and a 'Class: <one of {sorted(CLASSES)}>.'")
    files = tuple(re.findall(r"^diff --git a/(\S+) b/", text, re.M))
    functions = tuple(dict.fromkeys(re.findall(r"^@@ [^@]+ @@ .*?(\w+)\(", text, re.M)))
    name = re.sub(r"^\d+-", "", patch.stem)
    return Mutant(name, patch, " ".join(subject.group(1).split()), cls.group(1), files, functions)


def load_mutants() -> list[Mutant]:
    return [parse_mutant(p) for p in sorted(MUTANTS.glob("*.patch"))]


@dataclass
class Catch:
    title: str
    time_s: float  # scenario time to the first report (or to the broken expectation)
    cycle: int | None
    names: str  # "title", "stack" or "no": where the mutated function (or caller) shows


@dataclass
class Control:
    """Base's runs of each scenario: whether it failed, and the bugs it shows anyway."""

    scenarios: dict[str, dict]  # name -> runs, failed, errors, titles, splats (Splat JSON)

    @classmethod
    def of(cls, results: list[ItemResult]) -> Control:
        scenarios: dict[str, dict] = {}
        for r in results:
            row = scenarios.setdefault(
                r.item.scenario.name, {"runs": 0, "failed": 0, "errors": 0, "splats": []}
            )
            row["runs"] += 1
            row["failed"] += r.status == "fail"
            row["errors"] += r.status == "error"
            row["splats"] += [b.splat.to_json() for b in compare.bugs_of(r)]
        for row in scenarios.values():
            row["titles"] = sorted({s["title"] for s in row["splats"]})
        return cls(scenarios)

    def bugs(self, scenario: str) -> list[compare.Bug]:
        row = self.scenarios.get(scenario, {})
        return [compare.Bug(Splat(**s)) for s in row.get("splats", [])]

    def failed(self, scenario: str) -> bool:
        return bool(self.scenarios.get(scenario, {}).get("failed"))

    def to_json(self) -> dict:
        return {
            name: {k: v for k, v in row.items() if k != "splats"}
            for name, row in self.scenarios.items()
        }


def judge(result: ItemResult, control: Control, mutant: Mutant) -> Catch | None:
    """The run caught the mutant: it failed, with a bug base does not show where base fails."""
    if result.status != "fail":
        return None
    name = result.item.scenario.name
    bugs = compare.bugs_of(result)
    new = [b for b in bugs if not any(b.same(x) for x in control.bugs(name))]
    if control.failed(name) and not new:
        return None
    bug = (new or bugs)[0]
    timed = result.first_splat_s if result.first_splat_s is not None else result.duration_s
    cycle = result.guest.cycles_done if result.guest else None
    return Catch(bug.title, round(timed, 1), cycle, names_of(bug, mutant))


def names_of(bug: compare.Bug, mutant: Mutant) -> str:
    if any(re.search(rf"\b{f}\b", bug.title) for f in mutant.functions):
        return "title"
    if any(re.search(rf"\b{f}\b", bug.splat.excerpt or "") for f in mutant.functions):
        return "stack"
    return "no"


class Bench:
    """The worktree, the scenarios and the base commit every mutant is measured against."""

    def __init__(self, args: argparse.Namespace, worktree: vcs.Worktree, base: str):
        self.args = args
        self.worktree = worktree
        self.base = base
        # the key names the base by its content: a tree imported on another machine is
        # another commit (its date) of the same tree, and a benchmark resumes there
        self.base_tree = vcs.tree_id(worktree.path, base)
        self.scenarios: list[Scenario] = stages.load(stages.ConfigRequest())
        self.out = Path(args.out).resolve()
        self.cache = paths.cache_dir() / "mutants"
        self.cache.mkdir(parents=True, exist_ok=True)
        committed = json.loads(JSON.read_text()) if JSON.exists() else {}
        # what a new machine resumes from: the records an earlier one committed
        self.committed = [committed.get("control_record") or {}, *committed.get("results", [])]

    def run(self, scenarios: list[Scenario], out: str, repeat: int, seed=None, enough=None):
        request = RunRequest(
            tree=str(self.worktree.path),
            placed=True,  # the benchmark holds the worktree and put it at the mutant
            scenarios=tuple(str(sc.path) for sc in scenarios),
            out_dir=str(self.out / out),
            repeat=repeat,
            seed=seed,
            enough=enough,
        )
        outcome = run_command.run_scenarios(request)
        if outcome.exit_code == Exit.INTERRUPTED:  # nothing of it is a result: keep none
            raise KeyboardInterrupt(f"interrupted in {out}")
        return outcome

    def key(self, what: str, scenarios: list[Scenario], extra: str = "") -> str:
        h = hashlib.sha256(f"{what}\n{self.base_tree}\n{extra}\n".encode())
        for sc in sorted(scenarios, key=lambda s: s.name):
            h.update(Path(sc.path).read_bytes())
        return h.hexdigest()[:16]

    def cached(self, key: str) -> dict | None:
        """A result measured before: in the cache, or in the committed mutants.json (a new
        machine resumes a benchmark an earlier one left half done)."""
        if self.args.fresh:
            return None
        path = self.cache / f"{key}.json"
        if path.exists():
            return json.loads(path.read_text())
        return next((r for r in self.committed if r.get("key") == key and "wall_s" in r), None)

    def keep(self, key: str, record: dict) -> dict:
        record["key"] = key
        (self.cache / f"{key}.json").write_text(json.dumps(record, indent=1))
        return record

    def mutant_key(self, mutant: Mutant, screen: list[Scenario]) -> str:
        return self.key(mutant.patch.read_text(), screen, str(self.args.runs))

    def screened(self, mutant: Mutant, index: int) -> tuple[list[Scenario], set[str] | None]:
        """The scenarios a mutant is screened with (--affected's, or all for the sample),
        and for the sample the names --affected would have chosen."""
        affected, _ = series_command.select(self.scenarios, list(mutant.files), True)
        if self.args.sample > 0 and index % self.args.sample == 0:
            return list(self.scenarios), {sc.name for sc in affected}
        return affected, None


def control_runs(bench: Bench, scenarios: list[Scenario]) -> tuple[Control, dict]:
    key = bench.key("control", scenarios, str(bench.args.base_runs))
    record = bench.cached(key)
    if record is None:
        started = time.monotonic()
        bench.worktree.checkout(bench.base)
        outcome = bench.run(scenarios, "base", bench.args.base_runs)
        record = {
            "out": str(outcome.out),
            "exit_code": outcome.exit_code,
            "accelerator": outcome.info.properties.get("accelerator", "").split(":")[0],
            "kernel_release": outcome.info.properties.get("kernel_release", ""),
            "wall_s": round(time.monotonic() - started),
            "scenarios": Control.of(outcome.results).scenarios,
        }
        bench.keep(key, record)
    return Control(record["scenarios"]), record


def measure(
    bench: Bench,
    control: Control,
    mutant: Mutant,
    screen_set: list[Scenario],
    affected: set[str] | None,
) -> dict:
    """Screen the mutant, confirm its fastest catcher, keep the record under its key."""
    key = bench.mutant_key(mutant, screen_set)
    started = time.monotonic()
    head = bench.worktree.apply(bench.base, [mutant.patch])
    bench.worktree.keep(f"mutants/{mutant.name}", head)
    record: dict = {
        "name": mutant.name,
        "patch": mutant.patch.name,
        "subject": mutant.subject,
        "class": mutant.cls,
        "files": list(mutant.files),
        "functions": list(mutant.functions),
        "sampled_all_scenarios": affected is not None,
        "screen": {},
        "confirm": None,
    }
    outcome = bench.run(screen_set, f"{mutant.name}/screen", 1)
    record["build"] = (outcome.info.build or {}).get("duration_s")
    if outcome.exit_code == Exit.BUILD:
        record["verdict"] = "did not build"
        return bench.keep(key, record)
    catches: dict[str, Catch] = {}
    for result in outcome.results:
        name = result.item.scenario.name
        catch = judge(result, control, mutant)
        record["screen"][name] = {
            "status": result.status,
            "caught": catch is not None,
            **(catch.__dict__ if catch else {}),
            "error": result.error,
            "affected": affected is None or name in affected,
        }
        if catch:
            catches[name] = catch
    record["confirm"] = confirm(bench, control, mutant, catches)
    record["wall_s"] = round(time.monotonic() - started)
    record["verdict"] = verdict(record, bench.args.runs)
    return bench.keep(key, record)


def confirm(bench: Bench, control: Control, mutant: Mutant, catches: dict[str, Catch]) -> dict:
    """Run the screen's catchers, fastest first, until one catches in all but one of --runs."""
    runs = bench.args.runs
    by_name = {sc.name: sc for sc in bench.scenarios}
    tried = []
    # a scenario base passes first: one base fails catches only by a title base did not
    # show in its few runs, which a rarer form of base's own bug can also give
    for name in sorted(catches, key=lambda n: (control.failed(n), catches[n].time_s)):
        sc = by_name[name]

        def enough(finished: list[ItemResult]) -> str | None:
            missed = sum(1 for r in finished if not within(judge(r, control, mutant)))
            return (
                f"{missed} runs missed it: fewer than {runs - 1} of {runs}" if missed > 1 else None
            )

        outcome = bench.run([sc], f"{mutant.name}/confirm-{name}", runs, sc.seed + 1, enough)
        ran = [r for r in outcome.results if r.status != "skipped"]
        found = [judge(r, control, mutant) for r in ran]
        first = next((i for i, c in enumerate(found) if c), None)
        row = {
            "scenario": name,
            "runs": len(ran),
            "caught": sum(1 for c in found if c),
            "within": sum(1 for c in found if within(c)),
            "first_run": first,
            "first": found[first].__dict__ if first is not None else None,
            "scenario_s_to_first": (
                round(sum(r.duration_s for r in ran[:first]) + found[first].time_s, 1)
                if first is not None
                else None
            ),
            "titles": sorted({c.title for c in found if c}),
        }
        tried.append(row)
        if row["within"] >= runs - 1:
            break
    return {"tried": tried}


def within(catch: Catch | None) -> bool:
    return catch is not None and catch.time_s <= WITHIN_S


def verdict(record: dict, runs: int) -> str:
    tried = (record.get("confirm") or {}).get("tried") or []
    if any(t["within"] >= runs - 1 for t in tried):
        return "caught"
    if any(t["caught"] for t in tried):
        return "sometimes"
    return "missed"


def write(records: list[dict], control_record: dict, bench_info: dict) -> None:
    done = [r for r in records if r.get("verdict")]
    caught = [r for r in done if r["verdict"] == "caught"]
    wall = bench_info["control_wall_s"] + sum(r.get("wall_s", 0) for r in done)
    result = {
        **bench_info,
        "within_s": WITHIN_S,
        "mutants": len(records),
        "measured": len(done),
        "caught": len(caught),
        "score": round(len(caught) / len(done), 3) if done else None,
        "wall_s": wall,
        "classes": CLASSES,
        "control": Control(control_record["scenarios"]).to_json(),
        "control_record": control_record,
        "results": records,
    }
    JSON.write_text(json.dumps(result, indent=1) + "\n")
    TABLE.write_text(table(result))
    say(f"mutants: {len(caught)}/{len(done)} caught; {JSON}, {TABLE}")


def table(result: dict) -> str:
    runs = result["runs"]
    lines = [
        "# Mutants: injected lifetime bugs and what caught them",
        "",
        "Written by `benchmarks/mutants.py` (do not edit); every patch here says what it",
        "breaks and its class. Caught = one scenario reported it within "
        f"{result['within_s']:g} s of scenario time in at least {runs - 1} of {runs} runs.",
        "",
        f"Score: **{result['caught']} of {result['measured']} caught** "
        f"({result['mutants']} mutants; base {result['base'][:12]} ({result['kernel_release']}), "
        f"{result['accelerator']}, "
        f"wall time {result['wall_s'] // 60} min).",
        "",
        "| # | mutant | class | verdict | scenario | runs | title | names the function | "
        "first: run, cycle, scenario s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(result["results"], 1):
        tried = (r.get("confirm") or {}).get("tried") or []
        best = max(tried, key=lambda t: t["within"], default=None)
        if not r.get("verdict"):
            lines.append(f"| {i} | {r['name']} | {r['class']} | not run yet | | | | | |")
            continue
        if best is None:
            missed = ", ".join(sorted(r["screen"])) or "none affected"
            lines.append(
                f"| {i} | {r['name']} | {r['class']} | **{r['verdict']}** | ({missed}) | | | | |"
            )
            continue
        first = best["first"] or {}
        lines.append(
            f"| {i} | {r['name']} | {r['class']} | {r['verdict']} | {best['scenario']} | "
            f"{best['within']}/{best['runs']} | {first.get('title', '')} | "
            f"{first.get('names', '')} | {best['first_run']}, {first.get('cycle')}, "
            f"{best['scenario_s_to_first']} |"
        )
    missed = [r for r in result["results"] if r.get("verdict") in ("missed", "sometimes")]
    if missed:
        why = json.loads(WHY_MISSED.read_text()) if WHY_MISSED.exists() else {}
        lines += ["", "## Missed, and why", ""]
        for r in missed:
            reason = why.get(r["name"], "not yet analysed")
            lines.append(f"- {r['name']} ({r['verdict']}): {reason}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--base-runs", type=int, default=2)
    parser.add_argument("--sample", type=int, default=4, help="every Nth mutant: all scenarios")
    parser.add_argument("--only", nargs="*", default=[], help="mutant names to measure")
    parser.add_argument("--out", default=str(paths.cache_dir() / "mutants" / "runs"))
    parser.add_argument("--fresh", action="store_true", help="ignore cached results")
    parser.add_argument(
        "--again", nargs="*", default=[], help="mutants to measure anew (a helper changed)"
    )
    parser.add_argument("--report-only", action="store_true", help="rewrite the table only")
    args = parser.parse_args()
    if args.report_only:
        TABLE.write_text(table(json.loads(JSON.read_text())))
        return 0
    mutants = load_mutants()
    stages.install_signal_handlers()
    repo = stages.open_repository(stages.ConfigRequest())
    with vcs.worktree(repo) as worktree:
        vcs.restore_import(repo)
        base = vcs.resolve(repo, "HEAD")
        bench = Bench(args, worktree, base)
        screens = [bench.screened(m, i) for i, m in enumerate(mutants)]
        screen = {sc.name: sc for scenarios, _ in screens for sc in scenarios}
        control, control_record = control_runs(bench, list(screen.values()))
        info = {
            "base": base,
            "runs": args.runs,
            "base_runs": args.base_runs,
            "accelerator": control_record.get("accelerator", "").split(":")[0],
            "kernel_release": control_record.get("kernel_release", ""),
            "control_wall_s": control_record["wall_s"],
        }
        records = [
            (None if m.name in args.again else bench.cached(bench.mutant_key(m, scenarios)))
            or {"name": m.name, "class": m.cls}
            for m, (scenarios, _) in zip(mutants, screens, strict=True)
        ]
        for i, mutant in enumerate(mutants):
            if (args.only and mutant.name not in args.only) or records[i].get("verdict"):
                continue
            files = ", ".join(mutant.files)
            say(f"mutant {i + 1}/{len(mutants)}: {mutant.name} ({mutant.cls}; {files})")
            records[i] = measure(bench, control, mutant, *screens[i])
            say(f"mutant {mutant.name}: {records[i]['verdict']}")
            write(records, control_record, info)  # a benchmark cut short keeps what it measured
    write(records, control_record, info)  # the worktree's exit put the tree back at its import
    return 0


if __name__ == "__main__":
    sys.exit(main())

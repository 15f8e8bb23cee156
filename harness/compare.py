"""What a patch series changed: per scenario, base runs against head runs -> one verdict.

Pure functions over the two sides' item results, so the rules are tested on
real kernel reports without booting anything. Bugs are compared the way a
kernel developer compares them (splats.same_bug): the same KASAN bug type in
the same function is one bug whatever the access size, offset or line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness import splats
from harness.evidence import Evidence
from harness.results import ItemResult
from harness.splats import Splat

REGRESSED = "regressed"
FIXED = "fixed"
LIKELY_FIXED = "likely fixed"  # head ran clean, but not often enough for p <= 1 %
STILL_FAILING = "still failing"
CHANGED = "changed"
FLAKY = "flaky"
UNCHANGED_PASS = "unchanged pass"
ERROR = "error"
SKIPPED = "skipped"  # a side's tree lacks a kernel API the scenario needs
# report order: what needs attention first
VERDICTS = (
    REGRESSED,
    ERROR,
    CHANGED,
    FLAKY,
    STILL_FAILING,
    LIKELY_FIXED,
    FIXED,
    UNCHANGED_PASS,
    SKIPPED,
)
SIDES = ("base", "head")


@dataclass(frozen=True)
class Bug:
    """One distinct problem a run showed: a splat, or an expectation that was not met."""

    splat: Splat

    @property
    def title(self) -> str:
        return self.splat.title

    def same(self, other: Bug) -> bool:
        return splats.same_bug(self.splat, other.splat)


def _expectation(text: str) -> Splat:
    """A broken expectation as a splat-like record; its numbers do not make it another bug."""
    text = re.sub(r"^cycle \d+: ", "", text)
    return Splat(
        kind="expectation",
        title=re.sub(r"\b(?:0x[0-9a-f]+|\d+)\b", "N", text),
        first_line=0,
        time=None,
        excerpt=text,
        scenario=None,
    )


def bugs_of(result: ItemResult) -> list[Bug]:
    """A run's splats; its broken expectations only when it has no splat (then they
    are the bug, as in a data-integrity failure; with a splat they are its echo:
    'kernel tainted during remove', 'the guest runner stopped reporting')."""
    if result.splats:
        return [Bug(s) for s in without_echoes(result.splats)]
    return [Bug(_expectation(v)) for v in result.violations]


def without_echoes(found: list[Splat]) -> list[Splat]:
    """The run's splats less the reports that follow its first KASAN report.

    After KASAN has reported a freed object, the kernel goes on with it: it
    falls over wherever it is used next (a GPF in spi_mem_adjust_op_size in one
    run, in task_work_add in another) and, with kasan_multi_shot, KASAN reports
    each later touch of it or of what took its memory (use-after-free in the
    next caller, out-of-bounds on the reallocated object). Which of those come
    and where is chance; the first report is the bug (a report on another object
    and path stays a bug of its own). A report during boot,
    before the item started, is its own incident and does not mask the item's.
    """
    booting = [s for s in found if s.outside.startswith("during boot")]
    running = [s for s in found if not s.outside.startswith("during boot")]
    return _after_first_kasan(booting) + _after_first_kasan(running)


def _after_first_kasan(ordered: list[Splat]) -> list[Splat]:
    at = next((i for i, s in enumerate(ordered) if s.kind == "kasan"), None)
    if at is None:
        return ordered
    first = ordered[at]
    later = [s for s in ordered[at + 1 :] if s.kind != "oops" and not splats.echoes(first, s)]
    return [*ordered[: at + 1], *later]


def _distinct(bugs: list[Bug]) -> list[Bug]:
    out: list[Bug] = []
    for bug in bugs:
        if not any(bug.same(seen) for seen in out):
            out.append(bug)
    return out


@dataclass
class Side:
    """One side's runs of one scenario."""

    name: str
    runs: list[ItemResult]

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.runs if r.status == "fail")

    @property
    def errors(self) -> list[ItemResult]:
        return [r for r in self.runs if r.status == "error"]

    @property
    def skipped(self) -> str | None:
        """Why this side could not run the scenario at all (None: it ran)."""
        if self.runs and all(r.status == "skipped" for r in self.runs):
            return self.runs[0].error or "skipped"
        return None

    @property
    def bugs(self) -> list[Bug]:
        return _distinct([b for r in self.runs for b in bugs_of(r)])

    def runs_with(self, bug: Bug) -> int:
        return sum(1 for r in self.runs if any(bug.same(b) for b in bugs_of(r)))

    def counts(self) -> str:
        if self.failed:
            return f"failed {self.failed}/{self.n}"
        return f"passed {self.n}/{self.n}"

    def to_json(self) -> dict:
        return {
            "runs": [
                {
                    "id": r.item.id,
                    "seed": r.item.seed,
                    "status": r.status,
                    "titles": [b.title for b in bugs_of(r)],
                    "error": r.error,
                    "console": r.console,
                }
                for r in self.runs
            ],
            "failed": self.failed,
            "errors": len(self.errors),
            "n": self.n,
        }


@dataclass
class Comparison:
    scenario: str
    verdict: str
    base: Side
    head: Side
    new: list[Bug] = field(default_factory=list)  # on head, never on base
    gone: list[Bug] = field(default_factory=list)  # on base, never on head
    error_side: str | None = None
    error: str | None = None
    # for fixed and regressed: the runs the verdict rests on (evidence.py)
    evidence: Evidence | None = None

    @property
    def called(self) -> str:
        """The verdict, with the chance it is luck when it rests on clean runs."""
        return f"{self.verdict} (p = {self.evidence.p:.2g})" if self.evidence else self.verdict

    def line(self) -> str:
        """The verdict as one line of a mailing-list reply."""
        b, h = self.base, self.head
        if self.verdict == ERROR:
            return f"{self.scenario}: error: could not run on {self.error_side}: {self.error}"
        if b.skipped or h.skipped:
            said = [
                f"{x.name} {x.skipped}" if x.skipped else f"{x.counts()} on {x.name}"
                for x in (b, h)
            ]
            new = f"; new on head: {_titles(self.new)}" if self.new else ""
            return f"{self.scenario}: {self.verdict}: {'; '.join(said)}{new}"
        if self.verdict == UNCHANGED_PASS:
            detail = f"passed {b.n}/{b.n} on base, passed {h.n}/{h.n} on head"
        else:
            detail = f"{b.counts()} on base, {h.counts()} on head"
        if self.new:
            detail += f"; new on head: {_titles(self.new)}"
        if self.gone:
            detail += f"; gone on head: {_titles(self.gone)}"
        if self.verdict in (STILL_FAILING, FLAKY) and not (self.new or self.gone):
            detail += "; same bugs"
        return f"{self.scenario}: {self.called}: {detail}"

    def to_json(self) -> dict:
        return {
            "scenario": self.scenario,
            "verdict": self.verdict,
            "line": self.line(),
            "error_side": self.error_side,
            "error": self.error,
            "evidence": self.evidence.to_json() if self.evidence else None,
            "new_titles": [b.title for b in self.new],
            "gone_titles": [b.title for b in self.gone],
            "base": self.base.to_json(),
            "head": self.head.to_json(),
        }


def _titles(bugs: list[Bug], shown: int = 2) -> str:
    more = f" (+{len(bugs) - shown} more)" if len(bugs) > shown else ""
    return "; ".join(b.title for b in bugs[:shown]) + more


def _first_line(text: str | None) -> str:
    return (text or "no verdict").splitlines()[0]


def compare(scenario: str, base: Side, head: Side) -> Comparison:
    """The verdict for one scenario from both sides' runs (same seeds on both)."""
    if base.skipped or head.skipped:
        ran = next((side for side in (base, head) if not side.skipped), None)
        if ran is not None and (ran.errors or not ran.runs):
            why = _first_line(ran.errors[0].error) if ran.errors else "no runs"
            return Comparison(scenario, ERROR, base, head, error_side=ran.name, error=why)
        # a series that adds the API makes the scenario testable: failing on head is its doing
        if ran is head and head.failed:
            return Comparison(scenario, REGRESSED, base, head, new=head.bugs)
        return Comparison(scenario, SKIPPED, base, head)
    for side in (base, head):
        if side.errors or not side.runs:
            why = _first_line(side.errors[0].error) if side.errors else "no runs"
            return Comparison(scenario, ERROR, base, head, error_side=side.name, error=why)
    base_bugs, head_bugs = base.bugs, head.bugs
    new = [b for b in head_bugs if not any(b.same(x) for x in base_bugs)]
    gone = [b for b in base_bugs if not any(b.same(x) for x in head_bugs)]
    found = None
    if new:  # a new bug counts also when both sides fail; the most frequent one carries it
        verdict = REGRESSED
        found = min((Evidence(head.runs_with(b), head.n, base.n) for b in new), key=lambda e: e.p)
    elif not base.failed:
        verdict = UNCHANGED_PASS if not head.failed else REGRESSED
    elif not head.failed:
        found = Evidence(base.failed, base.n, head.n)
        verdict = FIXED if found.enough else LIKELY_FIXED
    elif gone:
        verdict = CHANGED
    elif base.failed < base.n or head.failed < head.n:
        verdict = FLAKY
    else:
        verdict = STILL_FAILING
    return Comparison(scenario, verdict, base, head, new=new, gone=gone, evidence=found)


def more_runs(c: Comparison, bound: int) -> tuple[str, int] | None:
    """The side that needs more runs for the verdict to be more than luck, and how many.

    fixed: head must pass as often as base's failure rate asks; regressed: base
    must run without the new bug as often as its rate on head asks. At most
    ``bound`` runs a side: past it the verdict keeps its p (likely fixed).
    """
    if c.evidence is None or c.evidence.enough:
        return None
    clean = c.head if c.verdict == LIKELY_FIXED else c.base
    wanted = min(bound, c.evidence.needed) - clean.n
    return (clean.name, wanted) if wanted > 0 else None


def changes_verdict(c: Comparison, added: ItemResult) -> bool:
    """Whether a run added to the side ``more_runs`` named ends the need for more of them:
    any failure on a head called fixed, a new bug (or no verdict) on base for regressed."""
    if added.status == "error":
        return True
    if c.verdict == REGRESSED:
        return any(b.same(n) for b in bugs_of(added) for n in c.new)
    return added.status == "fail"


def compare_all(
    scenarios: list[str], base: list[ItemResult], head: list[ItemResult]
) -> list[Comparison]:
    """One comparison per scenario, in the order given."""

    def runs(results: list[ItemResult], name: str) -> list[ItemResult]:
        return [r for r in results if r.item.scenario.name == name]

    return [
        compare(name, Side("base", runs(base, name)), Side("head", runs(head, name)))
        for name in scenarios
    ]


def regressed(comparisons: list[Comparison]) -> bool:
    return any(c.verdict == REGRESSED for c in comparisons)


def table(comparisons: list[Comparison]) -> list[str]:
    """The end-of-run table: one line per scenario, what needs attention first."""
    order = {v: i for i, v in enumerate(VERDICTS)}
    return [c.line() for c in sorted(comparisons, key=lambda c: order[c.verdict])]

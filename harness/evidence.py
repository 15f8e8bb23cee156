"""When clean runs say "the bug is not here" and not "we were lucky": the one rule
`harness series` and `harness bisect` both decide by.

A lifetime race shows in some fraction of runs. A side (or commit) that showed
a bug in ``hits`` of ``ran`` runs has its rate taken as hits / (ran + 1), so a
bug seen in all of few runs is not assumed to show always (3 of 3 gives 0.75).
Another side that ran ``clean`` times without it would do so, while still
having the bug at that rate, with probability (1 - rate) ** clean; a verdict
that rests on those clean runs is called only when that is at most
MISS_PROBABILITY, and more runs are asked for (up to MAX_RUNS) until it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MISS_PROBABILITY = 0.01  # of calling a side that has the bug clean
MAX_RUNS = 10  # the most runs a side, or an endpoint measuring a rate, gets by default


def rate(hits: int, ran: int) -> float:
    """The bug's rate from hits in ran runs, counted as if one more run had missed it."""
    return hits / (ran + 1)


def runs_needed(hits: int, ran: int, miss: float = MISS_PROBABILITY) -> int:
    """Clean runs that make 'it has not the bug' wrong with probability <= miss."""
    r = rate(hits, ran)
    if r <= 0:
        raise ValueError("no reproduction to size the runs from")
    return max(1, math.ceil(math.log(miss) / math.log(1 - r)))


@dataclass(frozen=True)
class Evidence:
    """A bug seen in ``hits`` of ``ran`` runs on one side, ``clean`` runs without it on another."""

    hits: int
    ran: int
    clean: int

    @property
    def p(self) -> float:
        """The chance that the clean side has the bug at the measured rate and still ran clean."""
        return (1 - rate(self.hits, self.ran)) ** self.clean

    @property
    def needed(self) -> int:
        return runs_needed(self.hits, self.ran)

    @property
    def enough(self) -> bool:
        return self.clean >= self.needed

    def text(self) -> str:
        """'p = 0.0039 (3/3 against 4 clean)': what a report line says about the evidence."""
        return f"p = {self.p:.2g} ({self.hits}/{self.ran} against {self.clean} clean)"

    def to_json(self) -> dict:
        return {
            "hits": self.hits,
            "ran": self.ran,
            "clean": self.clean,
            "p": self.p,
            "needed": self.needed,
        }

"""splats.same_bug on labelled pairs of real reports (tests/data/same-bug-pairs.json).

Each pair names two splats by log (under tests/data/logs, per kernel directory),
title and, where one log holds the title twice, scenario; a person labelled it
"same" or "different" and wrote why. The pairs hold the same bug seen across runs
and across the trees 6.1, 6.12 and 7.3, and different bugs of one driver,
among them guest/modules/splat_selftest's injected ones: two devm objects of one probe used after
unbind on two paths, two functions taking a mutex in atomic context.
"""

import json
from pathlib import Path

import pytest

from harness import splats

DATA = Path(__file__).parent / "data"
LOGS = DATA / "logs"
PAIRS = json.loads((DATA / "same-bug-pairs.json").read_text())


def _splat(ref: dict) -> splats.Splat:
    found = splats.parse((LOGS / ref["log"]).read_text(errors="replace"))
    chosen = [
        s
        for s in found
        if s.title == ref["title"] and ref.get("scenario", s.scenario) == s.scenario
    ]
    assert len(chosen) == 1, f"{ref}: {len(chosen)} splats match among {[s.title for s in found]}"
    return chosen[0]


def _name(pair: dict) -> str:
    return f"{pair['a']['log']}|{pair['a']['title']} vs {pair['b']['log']}|{pair['b']['title']}"


@pytest.mark.parametrize("pair", PAIRS, ids=_name)
def test_every_pair_is_classified_as_labelled(pair):
    a, b = _splat(pair["a"]), _splat(pair["b"])
    assert splats.same_bug(a, b) is pair["same"], pair["reason"]
    assert splats.same_bug(b, a) is pair["same"], pair["reason"]


def test_the_corpus_holds_both_labels_across_trees_and_injected_pairs():
    assert all(p["reason"].strip() and isinstance(p["same"], bool) for p in PAIRS)
    same = [p for p in PAIRS if p["same"]]
    different = [p for p in PAIRS if not p["same"]]
    assert len(same) >= 8 and len(different) >= 5
    trees = {Path(p[side]["log"]).parent.name or "6.12" for p in same for side in "ab"}
    assert {"6.1", "6.12", "7.3"} <= trees
    injected = [
        p for p in different if all(Path(p[s]["log"]).name.startswith("module-") for s in "ab")
    ]
    assert len(injected) >= 2


def _devm_pair() -> tuple[splats.Splat, splats.Splat]:
    (pair,) = [
        p
        for p in PAIRS
        if p["a"]["log"] == "module-devm-priv.log"
        and not p["same"]
        and p["b"]["log"] == "module-devm-buf.log"
    ]
    return _splat(pair["a"]), _splat(pair["b"])


def test_a_series_that_fixes_one_devm_bug_of_a_driver_and_adds_another_is_a_regression():
    """The symptom the rules were tuned against: it read "still failing", exit 0."""
    from harness import compare
    from tests.test_compare import run, side

    priv, buf = _devm_pair()
    base = side("base", *(run(n, priv) for n in range(3)))
    head = side("head", *(run(n, buf) for n in range(3)))
    found = compare.compare("s", base, head)
    assert found.verdict == compare.REGRESSED, found.line


def test_bisecting_one_devm_bug_does_not_count_the_other_as_reproduced():
    from harness.commands.bisection import classify
    from tests.test_compare import run

    priv, buf = _devm_pair()
    assert classify(run(0, priv), priv).outcome == "reproduced"
    assert classify(run(0, buf), priv).outcome != "reproduced"

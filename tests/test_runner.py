"""Guest runner decisions that need no VM: which taint bits are a result."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "guest"))

import runner  # noqa: E402

OOT, B, D, W = 1 << 12, 1 << 5, 1 << 7, 1 << 9


def test_loading_a_helper_module_is_not_a_result():
    assert runner.taint_gained(0, OOT) == ""


def test_kasan_oops_and_warn_are_reported_by_letter():
    assert runner.taint_gained(OOT, OOT | B | D) == "BD"
    assert runner.taint_gained(0, W) == "W"


def test_only_new_bits_count():
    assert runner.taint_gained(W, W | OOT) == ""
    assert runner.taint_gained(W | B, W | B | D) == "D"

"""The mutation benchmark's inputs and its rule for a catch, on real kernel reports."""

import json
from collections import Counter

from benchmarks import mutants
from harness.results import Item, ItemResult
from harness.scenario import load_scenario
from tests.test_compare import REGMAP, ROOT, SPI_NOR_READ

NVMEM = load_scenario(ROOT / "scenarios" / "nvmem-in-kernel-consumer-unbind.yaml")
AT24 = load_scenario(ROOT / "scenarios" / "nvmem-unbind-at24-during-read.yaml")
MUTANT = next(m for m in mutants.load_mutants() if m.name == "at24-data-freed-in-remove")


def test_every_mutant_says_its_class_and_what_it_changes():
    for m in mutants.load_mutants():
        text = m.patch.read_text()
        assert "MUTANT" in text and "never to be applied" in text, m.name
        assert m.cls in mutants.CLASSES and m.files and m.functions, m.name


def test_the_set_covers_each_class_twice_across_eight_files_of_the_providers():
    found = mutants.load_mutants()
    assert len(found) >= 20
    assert {c: n for c, n in Counter(m.cls for m in found).items() if n < 2} == {}
    assert set(Counter(m.cls for m in found)) == set(mutants.CLASSES)
    assert len({f for m in found for f in m.files}) >= 8


def test_the_changed_functions_come_from_the_hunks():
    assert MUTANT.files == ("drivers/misc/eeprom/at24.c",)
    assert MUTANT.functions == ("at24_probe", "at24_remove")


def result(scenario, *found, violations=(), rep=0) -> ItemResult:
    item = Item(f"{scenario.name}#{rep}", scenario, rep, scenario.seed + rep)
    run = ItemResult(item, splats=list(found), violations=list(violations), duration_s=9.0)
    run.status = "fail" if found or violations else "pass"
    run.first_splat_s = 4.2 if found else None
    return run


def test_a_scenario_base_fails_catches_a_mutant_only_with_a_bug_base_lacks():
    control = mutants.Control.of([result(NVMEM, REGMAP)])
    assert mutants.judge(result(NVMEM, REGMAP), control, MUTANT) is None
    catch = mutants.judge(result(NVMEM, REGMAP, SPI_NOR_READ), control, MUTANT)
    assert catch is not None and catch.title == SPI_NOR_READ.title and catch.time_s == 4.2


def test_a_scenario_base_passes_catches_with_any_failure_and_says_where_the_function_shows():
    control = mutants.Control.of([result(AT24), result(AT24, rep=1)])
    assert mutants.judge(result(AT24), control, MUTANT) is None
    catch = mutants.judge(result(AT24, REGMAP), control, MUTANT)  # at24_read is in its stack
    assert catch is not None and catch.title == REGMAP.title and catch.names == "stack"
    leak = mutants.judge(result(AT24, violations=["cycle 1: eeprom0 came back"]), control, MUTANT)
    assert leak is not None and leak.time_s == 9.0 and leak.names == "no"


def test_the_control_survives_the_cache_as_json():
    control = mutants.Control.of([result(NVMEM, REGMAP)])
    again = mutants.Control(json.loads(json.dumps(control.scenarios)))
    assert [b.title for b in again.bugs(NVMEM.name)] == [REGMAP.title]
    assert again.failed(NVMEM.name) and not again.failed(AT24.name)

"""The host-guest protocol (guest/protocol.py): what the host writes into a boot's plan
is what the guest reads back, class for class, for every shipped scenario."""

import json

import pytest

from guest import protocol, runner
from guest.fixtures import gpio_sim, usb_i2c
from harness import paths
from harness.results import expand
from harness.scenario import load_scenarios


def test_every_shipped_scenario_reaches_the_guest_as_the_host_checked_it():
    for item in expand(load_scenarios(paths.builtin_scenarios()), 1, None):
        wire = json.loads(json.dumps(item.plan_entry()))
        got = runner.decode_item(wire)
        assert isinstance(got.scenario, protocol.ScenarioSpec)
        assert protocol.to_json(got.scenario) == protocol.to_json(item.scenario), item.id
        for spec, mine in zip(got.scenario.fixtures, item.scenario.fixtures, strict=True):
            assert type(spec) is type(mine), "each fixture as its type's class"
        assert (got.id, got.seed, got.repetition) == (item.id, item.seed, item.repetition)


def test_the_plan_carries_only_what_the_guest_uses():
    (item,) = expand(load_scenarios(paths.builtin_scenarios())[:1], 1, None)
    scenario = item.plan_entry()["scenario"]
    assert "covers" not in scenario and "description" not in scenario and "path" not in scenario


def test_a_field_one_side_does_not_know_is_an_error_not_ignored():
    good = protocol.to_json(gpio_sim.Spec("chip0", "gpio-sim", banks=(gpio_sim.GpioBank("b", 8),)))
    assert protocol.decode(gpio_sim.Spec, good) == gpio_sim.Spec(
        "chip0", "gpio-sim", banks=(gpio_sim.GpioBank("b", 8),)
    )
    with pytest.raises(ValueError, match="Spec: unknown field"):
        protocol.decode(usb_i2c.Spec, {**good, "flash": "w25x80"})

"""Scenario schema: the shipped files load; bad input names file, line, field and the fix."""

from pathlib import Path

import pytest

from harness import paths
from harness.scenario import FIXTURE_TEMPLATES, load_scenario, load_scenarios, parse_scenario
from harness.yamlnodes import SchemaErrors, parse_duration

GOOD = """\
name: t
description: a test scenario. More text.
kconfig: [gpio-sim]
fixtures:
  chip0:
    type: gpio-sim
    banks:
      - {label: b0, lines: 8}
workers:
  - name: getters
    type: gpio-get-values
    fixture: chip0
    lines: [0, 1]
    threads: 2
actions:
  - do: remove
    fixture: chip0
    after: {worker: getters, ops: 10}
expect:
  worker_errnos: [ENODEV]
"""


def errors_of(text: str) -> list[str]:
    scenario, errors = parse_scenario(text, Path("s/t.yaml"))
    assert scenario is None, "expected the scenario to be rejected"
    return [str(e) for e in errors]


def test_builtin_scenarios_load():
    scenarios = load_scenarios(paths.builtin_scenarios())
    assert {s.name for s in scenarios} >= {"gpio-sim-remove-under-readers", "gpio-sim-plug-cycle"}
    for sc in scenarios:
        assert sc.workers and sc.actions and sc.fixtures


def test_good_scenario_values():
    scenario, errors = parse_scenario(GOOD, Path("s/t.yaml"))
    assert errors == []
    assert scenario.summary == "a test scenario"
    assert scenario.workers[0].threads == 2 and scenario.workers[0].lines == (0, 1)
    assert scenario.actions[0].after_worker == "getters" and scenario.actions[0].after_ops == 10
    assert scenario.expect.worker_errnos == ("ENODEV",)
    assert scenario.timeout == 300.0 and scenario.cycles == 1


def test_unknown_key_names_line_field_and_allowed_keys():
    errors = errors_of(GOOD.replace("    threads: 2", "    thread: 2"))
    assert len(errors) == 1
    assert errors[0].startswith("s/t.yaml:14: workers[0].thread: unknown key; allowed here:")
    assert "threads" in errors[0]


def test_bad_choice_lists_allowed_values():
    (error,) = errors_of(GOOD.replace("type: gpio-get-values", "type: gpio-read"))
    assert "s/t.yaml:11: workers[0].type: 'gpio-read' is not allowed; use one of:" in error
    assert "gpio-get-values" in error


def test_reference_to_missing_worker_and_fixture():
    text = GOOD.replace("worker: getters", "worker: nobody").replace(
        "    fixture: chip0\n    after", "    fixture: chip9\n    after"
    )
    errors = errors_of(text)
    assert any("actions[0].fixture: no fixture 'chip9'; defined: chip0" in e for e in errors)
    assert any("actions[0].after.worker: no worker 'nobody'; defined: getters" in e for e in errors)


def test_line_out_of_range_and_unknown_errno_and_fragment():
    text = GOOD.replace("lines: [0, 1]", "lines: [0, 9]").replace("[ENODEV]", "[ENODEVICE]")
    text = text.replace("kconfig: [gpio-sim]", "kconfig: [gpio-sum]")
    errors = errors_of(text)
    assert any(":13: workers[0].lines: bank 0 of 'chip0' has lines 0..7" in e for e in errors)
    assert any("expect.worker_errnos: 'ENODEVICE' is not a known errno" in e for e in errors)
    assert any(":3: kconfig: no fragment kconfigs/gpio-sum.config; available:" in e for e in errors)


def test_bad_duration_and_number():
    text = GOOD + "timeout: soon\ncycles: -1\n"
    errors = errors_of(text)
    assert any("timeout: expected a duration like 500ms, 2s or 1m, got 'soon'" in e for e in errors)
    assert any("cycles: must be between 1 and 10000" in e for e in errors)


def test_missing_required_and_invalid_yaml():
    assert any(
        "missing required key 'description'" in e for e in errors_of("name: t\nfixtures: {}\n")
    )
    (error,) = errors_of("name: [unclosed\n")
    assert error.startswith("s/t.yaml:") and "not valid YAML" in error


def test_name_must_match_file():
    (error,) = errors_of(GOOD.replace("name: t", "name: other"))
    assert "s/t.yaml:1: name: must match the file name ('t')" in error


def test_load_scenarios_collects_errors_of_all_files(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\n")
    (tmp_path / "b.yaml").write_text("name: b\ndescription: x\nfixtures: 3\n")
    with pytest.raises(SchemaErrors) as exc:
        load_scenarios([tmp_path / "a.yaml", tmp_path / "b.yaml"])
    text = str(exc.value)
    assert "a.yaml:1: missing required key 'description'" in text
    assert "b.yaml:3: fixtures: expected a mapping" in text


@pytest.mark.parametrize("text,seconds", [("500ms", 0.5), ("2s", 2.0), ("1.5m", 90.0), ("3", 3.0)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_gpio_line_requested_twice_is_an_error():
    extra = "  - name: again\n    type: gpio-edge-events\n    fixture: chip0\n    lines: [1]\n"
    text = GOOD.replace("actions:", extra + "actions:")
    (error,) = errors_of(text)
    assert (
        "workers[1]: line(s) [1] of chip0 bank 0 are already requested by worker 'getters'" in error
    )


def test_more_threads_than_lines_without_share_fd():
    (error,) = errors_of(GOOD.replace("threads: 2", "threads: 3"))
    assert "3 threads with their own requests need 3 lines, got 2" in error


USB = """\
name: t
description: a USB adapter fixture pulls in the fragments it needs.
kconfig: [lkdtm]
fixtures:
  eeprom0: {type: usb-i2c, adapter: ADAPTER, eeprom: 24c512}
workers:
  - {name: r, type: read-file, fixture: eeprom0, path: "{eeprom0.nvmem}"}
actions:
  - {do: remove, fixture: eeprom0}
"""


@pytest.mark.parametrize(
    "adapter, fragments",
    [("dln2", ("lkdtm", "usb-gadget", "dln2")), ("cp2112", ("lkdtm", "usb-gadget", "cp2112"))],
)
def test_fixture_fragments_are_added_to_the_listed_ones(adapter, fragments):
    scenario, errors = parse_scenario(USB.replace("ADAPTER", adapter), Path("s/t.yaml"))
    assert errors == []
    assert scenario.kconfig == fragments


def test_unknown_adapter_lists_the_emulated_ones():
    (error,) = errors_of(USB.replace("ADAPTER", "ch341"))
    assert ":5:" in error and "dln2" in error and "cp2112" in error


def test_unplug_points():
    def point_of(text):
        scenario, errors = parse_scenario(
            USB.replace("ADAPTER", "cp2112").replace("{do: remove, fixture: eeprom0}", text),
            Path("s/t.yaml"),
        )
        assert errors == []
        return scenario.actions[0].point, scenario.actions[0].point_count

    assert point_of("{do: unplug, fixture: eeprom0, point: halfway}") == ("halfway", 0)
    assert point_of("{do: unplug, fixture: eeprom0, point: {bytes: 3000}}") == ("bytes", 3000)
    assert point_of("{do: unplug, fixture: eeprom0, point: {transfers: 7}}") == ("transfers", 7)
    assert point_of("{do: unplug, fixture: eeprom0}") == ("", 0)


@pytest.mark.parametrize(
    "action, message",
    [
        ("{do: unplug, fixture: eeprom0, point: middle}", "use one of: halfway"),
        ("{do: unplug, fixture: eeprom0, point: {bytes: 1, transfers: 2}}", "give one of"),
        ("{do: unplug, fixture: eeprom0, point: {bytes: 0}}", "must be between 1 and"),
        ("{do: replug, fixture: eeprom0, point: halfway}", "only applies to action 'unplug'"),
    ],
)
def test_bad_unplug_points_name_the_line(action, message):
    text = USB.replace("ADAPTER", "cp2112").replace("{do: remove, fixture: eeprom0}", action)
    (error,) = errors_of(text)
    assert error.startswith("s/t.yaml:9:") and message in error


def test_unplug_is_for_usb_fixtures():
    (error,) = errors_of(GOOD.replace("do: remove", "do: unplug"))
    assert "USB adapter fixtures" in error and "use 'remove'/'create'" in error


READER = GOOD.replace(
    """    threads: 2
""",
    """    threads: 2
  - name: reader
    type: read-file
    path: /sys/bus/nvmem/devices/*/nvmem
    block_size: BLOCK
""",
)


@pytest.mark.parametrize(
    "text, size",
    [("4096", 4096), ("64KiB", 65536), ("128K", 131072), ("1MiB", 1 << 20), ("69905", 69905)],
)
def test_block_size_units(text, size):
    scenario, errors = parse_scenario(READER.replace("BLOCK", text), Path("s/t.yaml"))
    assert errors == []
    assert scenario.workers[1].block_size == size


def test_block_size_defaults_to_what_cat_asks():
    scenario, _ = parse_scenario(READER.replace("    block_size: BLOCK\n", ""), Path("s/t.yaml"))
    assert scenario.workers[1].block_size == 128 * 1024


def test_bad_block_size_names_line_and_form():
    (error,) = errors_of(READER.replace("BLOCK", "lots"))
    assert error.startswith("s/t.yaml:18: workers[1].block_size: expected a size like 4096")


def test_wait_ops_action_needs_nothing_else():
    text = GOOD.replace("  - do: remove\n", "  - do: wait-ops\n  - do: remove\n")
    scenario, errors = parse_scenario(text, Path("s/t.yaml"))
    assert errors == [] and scenario.actions[0].do == "wait-ops"


def test_covers_are_tree_relative_paths_and_every_builtin_scenario_lists_them():
    text = GOOD.replace(
        "kconfig: [gpio-sim]\n",
        "kconfig: [gpio-sim]\ncovers:\n  - drivers/gpio/\n  - /usr/src/x.c\n",
    )
    (error,) = errors_of(text)
    assert error.startswith("s/t.yaml:6: covers[1]: ")
    assert "relative to the kernel tree's top" in error
    scenario, _ = parse_scenario(
        GOOD.replace("kconfig: [gpio-sim]\n", "kconfig: [gpio-sim]\ncovers: drivers/gpio/\n"),
        Path("s/t.yaml"),
    )
    assert scenario.touched_by(["drivers/gpio/gpio-sim.c", "drivers/gpio.c"]) == [
        "drivers/gpio/gpio-sim.c"
    ]
    for sc in load_scenarios(paths.builtin_scenarios()):
        assert sc.covers, f"{sc.name} lists no covers"


REVOCABLE = """\
name: t
description: revocable readers.
fixtures:
  rev0:
    type: revocable
    data: some data
workers:
  - name: readers
    type: revocable-read
    fixture: rev0
    path: "{rev0.consumer}"
    threads: 2
    share_fd: true
    on_error: continue
    min_ops_after_removal: 5
actions:
  - do: remove
    fixture: rev0
"""


def test_a_revocable_fixture_needs_the_api_and_its_readers_count_reads_after_the_revoke():
    scenario, errors = parse_scenario(REVOCABLE, Path("s/t.yaml"))
    assert not errors
    assert scenario.needs == ("revocable",)
    assert scenario.fixtures[0].data == "some data"
    assert scenario.workers[0].min_ops_after_removal == 5


def test_revocable_mistakes_name_the_line():
    (error,) = errors_of(REVOCABLE.replace("data: some data", "data: resource_gone"))
    assert error.startswith("s/t.yaml:6: fixtures.rev0.data: ")
    assert "other than 'resource_gone'" in error
    (error,) = errors_of(
        REVOCABLE.replace(
            "description: revocable readers.\n", "description: x\nneeds: [revokable]\n"
        )
    )
    assert error.startswith("s/t.yaml:3: needs[0]: no kernel API 'revokable'; known: revocable")
    wrong = GOOD.replace("type: gpio-get-values", "type: revocable-read\n    path: /x")
    assert any("works on a revocable fixture, not gpio-sim" in e for e in errors_of(wrong))
    wrong = GOOD.replace("type: gpio-get-values", "type: write-read-back\n    path: /x")
    (error,) = [e for e in errors_of(wrong) if "chip model" in e]
    assert error.startswith("s/t.yaml:13: workers[0].fixture: write-read-back checks the chip")
    wrong = GOOD.replace("type: gpio-get-values\n    fixture: chip0", "type: open-close")
    assert "s/t.yaml:10: workers[0]: a worker of type open-close needs 'path' or 'fixture'" in (
        errors_of(wrong)
    )


def test_in_kernel_gpio_consumers_and_wp_lines_name_real_lines():
    held = GOOD.replace(
        "      - {label: b0, lines: 8}\n",
        "      - {label: b0, lines: 8}\n    kernel_consumer: {line: 3}\n",
    )
    scenario, errors = parse_scenario(held, Path("s/t.yaml"))
    assert not errors and scenario.fixtures[0].kernel_consumer
    assert (scenario.fixtures[0].consumer_bank, scenario.fixtures[0].consumer_line) == (0, 3)
    (error,) = errors_of(held.replace("{line: 3}", "{line: 8}"))
    assert error.startswith(
        "s/t.yaml:9: fixtures.chip0.kernel_consumer.line: bank 0 has lines 0..7"
    )
    wp = load_scenario(paths.SCENARIOS_DIR / "nvmem-wp-gpio-removed-under-writers.yaml")
    eeprom = next(f for f in wp.fixtures if f.type == "usb-i2c")
    assert (eeprom.wp_label, eeprom.wp_line) == ("harness-wp", 1)
    # the chip's removal affects the EEPROM's workers as the EEPROM's own would
    assert eeprom.depends_on == ("chip0",) and wp.fixtures[0].depends_on == ()
    text = (paths.SCENARIOS_DIR / "nvmem-wp-gpio-removed-under-writers.yaml").read_text()
    errors = errors_of(text.replace("wp_gpio: {fixture: chip0", "wp_gpio: {fixture: eeprom0"))
    assert any(
        "no gpio-sim fixture 'eeprom0' defined before this one (defined: chip0)" in e
        for e in errors
    )


BAD = Path(__file__).parent / "scenarios" / "bad"


def expectations(path: Path) -> list[tuple[int, str]]:
    """The '# expect: LINE: TEXT' lines a bad-input fixture opens with."""
    out = []
    for line in path.read_text().splitlines():
        if not line.startswith("# expect: "):
            break
        number, text = line.removeprefix("# expect: ").split(": ", 1)
        out.append((int(number), text))
    return out


@pytest.mark.parametrize("path", sorted(BAD.glob("*.yaml")), ids=lambda p: p.stem)
def test_bad_input_fixtures_name_line_and_fix(path):
    with pytest.raises(SchemaErrors) as caught:
        load_scenario(path)
    errors = [str(e) for e in caught.value.errors]
    assert expectations(path)
    for line, text in expectations(path):
        assert any(e.startswith(f"{path}:{line}: ") and text in e for e in errors), errors


WORKER = GOOD.replace(
    "actions:",
    """  - name: r
    type: TYPE
    fixture: FIXTURE
    path: "PATH"
actions:""",
).replace(
    "fixtures:\n",
    """fixtures:
  eeprom0: {type: usb-i2c, adapter: dln2, eeprom: 24c32}
  rev0: {type: revocable}
""",
)


def path_errors(path: str, fixture: str = "eeprom0", kind: str = "read-file") -> list[str]:
    text = WORKER.replace("PATH", path).replace("FIXTURE", fixture).replace("TYPE", kind)
    return [str(e) for e in parse_scenario(text, Path("s/t.yaml"))[1]]


@pytest.mark.parametrize(
    "path, fixture",
    [
        ("{eeprom0.nvmem}", "eeprom0"),
        ("{eeprom0.eeprom}", "eeprom0"),
        ("/sys/bus/nvmem/devices/*/nvmem", "eeprom0"),
        ("/sys/bus/i2c/devices/{eeprom0.client}/eeprom", "eeprom0"),
        ("/dev/gpiochip*", "chip0"),
        ("{chip0.kernel_consumer}", "chip0"),
    ],
)
def test_worker_paths_that_reach_the_fixture_are_accepted(path, fixture):
    assert path_errors(path, fixture) == []


@pytest.mark.parametrize(
    "path, fixture, message",
    [
        ("/dev/zero", "eeprom0", "outside eeprom0's devices"),
        ("/etc/passwd", "eeprom0", "use {eeprom0.eeprom}, {eeprom0.nvmem}"),
        ("/dev/gpiochip0", "eeprom0", "or a path under /sys/bus/nvmem/devices/"),
        ("{eeprom0.nvmem}/../../../zero", "eeprom0", "'..' leaves the device area"),
        ("{eeprom0.client}/eeprom", "eeprom0", "is a device's name, not a path"),
        ("{chip0.dev}", "eeprom0", "set fixture: chip0"),
        ("{chip9.dev}", "chip0", "no fixture 'chip9'"),
        ("{chip0.dev", "chip0", "a brace without its pair"),
        ("{chip0.nvmem}", "chip0", "chip0 gives {chip0.dev}, {chip0.device}"),
    ],
)
def test_worker_paths_that_leave_the_fixture_name_line_and_fix(path, fixture, message):
    (error,) = path_errors(path, fixture)
    assert error.startswith("s/t.yaml:20: workers[1].path: ") and message in error


def test_a_revocable_fixture_is_read_through_its_template_only():
    (error,) = path_errors("/sys/kernel/debug/x", "rev0", "revocable-read")
    assert "outside rev0's devices" in error and "use {rev0.consumer}" in error


def test_every_guest_fixture_gives_exactly_the_template_values_the_schema_knows():
    """The guest's values() (what it fills templates with) against FIXTURE_TEMPLATES, with
    the fixture objects the guest makes of the shipped scenarios' records (no setup)."""
    from guest import fixtures

    given = {}
    for sc in load_scenarios(paths.builtin_scenarios()):
        for spec in sc.fixtures:
            made = fixtures.make(spec, "harness-test-0", "dummy_udc.0", {})
            given.setdefault(spec.type, set(made.values()))
    assert given == {kind: set(keys) for kind, keys in FIXTURE_TEMPLATES.items()}


def test_bounds_must_be_more_than_0():
    text = GOOD.replace("worker_errnos:", "workers_exit_within: 0s\n  worker_errnos:")
    text = text.replace("    after:", "    within: 0ms\n    after:")
    errors = errors_of(text)
    assert any("actions[0].within: must be more than 0" in e for e in errors)
    assert any("expect.workers_exit_within: must be more than 0" in e for e in errors)


def test_a_covers_entry_is_decided_from_the_tree_when_one_is_known(tmp_path):
    (tmp_path / "drivers" / "gpio").mkdir(parents=True)
    (tmp_path / "drivers" / "gpio" / "gpio-sim.c").write_text("")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "setlocalversion").write_text("")

    def problems(cover: str, tree: Path | None) -> list[str]:
        text = GOOD + f"covers: [{cover}]\n"
        return [str(e) for e in parse_scenario(text, Path("s/t.yaml"), tree)[1]]

    assert problems("scripts/setlocalversion", tmp_path) == []  # a file without a dot
    assert "write scripts/setlocalversion/" in problems("scripts/setlocalversion", None)[0]
    assert "is a directory of" in problems("drivers/gpio", tmp_path)[0]
    assert "write drivers/gpio-sim.c" not in problems("drivers/gpio/gpio-sim.c/", tmp_path)[0]
    assert "write drivers/gpio/gpio-sim.c" in problems("drivers/gpio/gpio-sim.c/", tmp_path)[0]
    assert problems("drivers/gpio/", tmp_path) == problems("drivers/gpio/Kconfig", None) == []


def test_a_whole_file_read_needs_a_chip_whose_size_it_must_reach():
    text = GOOD.replace(
        "    type: gpio-get-values\n",
        '    type: read-file\n    path: "{chip0.dev}"\n    hold: false\n    whole_file: true\n',
    )
    (error,) = errors_of(text)
    assert error.startswith("s/t.yaml:14: workers[0].whole_file: ")
    assert "chip's size: it needs a spi-nor/usb-i2c fixture" in error


USB_GPIO = """\
name: t
description: d
fixtures:
  gpio0: {type: usb-gpio, adapter: dln2, PINS}
workers:
  - {name: getter, type: gpio-get-values, fixture: gpio0, lines: [0]}
actions:
  - ACTION
"""


def test_usb_gpio_fixture_takes_the_pins_and_an_unplug():
    scenario, errors = parse_scenario(
        USB_GPIO.replace("PINS", "pins: 8").replace("ACTION", "{do: unplug, fixture: gpio0}"),
        Path("s/t.yaml"),
    )
    assert errors == []
    assert scenario.fixtures[0].pins == 8 and scenario.actions[0].do == "unplug"
    assert {"usb-gadget", "dln2"} <= set(scenario.kconfig)


@pytest.mark.parametrize(
    "pins, action, line, message",
    [
        ("pins: 33", "{do: remove, fixture: gpio0}", 4, "between 1 and 32"),
        ("pins: 8", "{do: unplug, fixture: gpio0, point: halfway}", 8, "drop 'point'"),
    ],
)
def test_bad_usb_gpio_fixtures_name_the_line(pins, action, line, message):
    text = USB_GPIO.replace("PINS", pins).replace("ACTION", action)
    (error,) = errors_of(text)
    assert error.startswith(f"s/t.yaml:{line}:") and message in error

"""Exit status and the run's last lines: a run with items lacking a verdict is not a success."""

from pathlib import Path

from harness.commands import run as run_command
from harness.results import ItemResult, expand
from harness.scenario import load_scenario
from harness.status import Exit

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def results(*statuses: str) -> list[ItemResult]:
    sc = load_scenario(SCENARIOS / "gpio-sim-plug-cycle.yaml")
    items = expand([sc], repeat=len(statuses), seed=1)
    out = []
    for item, status in zip(items, statuses, strict=True):
        error = (
            "the kernel did not reach the guest runner (timeout)\ntail"
            if status == "error"
            else None
        )
        out.append(ItemResult(item, status=status, error=error, console=f"/r/boot-{item.seed}.log"))
    return out


def test_all_passed_is_0_and_a_failure_is_1():
    assert run_command.exit_code_for(results("pass", "pass")) == Exit.PASS
    assert run_command.exit_code_for(results("pass", "fail")) == Exit.FAIL


def test_an_item_without_verdict_is_its_own_status_even_beside_failures():
    assert run_command.exit_code_for(results("fail", "error")) == Exit.NO_VERDICT
    assert run_command.exit_code_for(results("error", "error")) == Exit.NO_VERDICT
    assert len({0, 1, 2, 3, Exit.NO_VERDICT, Exit.NOTHING_RAN}) == 6


def test_a_run_in_which_nothing_ran_is_not_a_pass():
    assert run_command.exit_code_for([]) == Exit.NOTHING_RAN
    assert run_command.exit_code_for(results("skipped", "skipped")) == Exit.NOTHING_RAN
    assert run_command.exit_code_for(results("skipped", "pass")) == Exit.PASS
    assert run_command.exit_code_for(results("skipped", "error")) == Exit.NO_VERDICT


def test_a_kernel_report_no_item_could_take_fails_a_passing_run():
    assert run_command.exit_code_for(results("pass", "pass"), outside_splats=1) == Exit.FAIL
    line = run_command.summary_line(Path("/r"), results("pass"), outside_splats=1)
    assert line.endswith("pass 1, fail 0, error 0, 1 kernel report(s) no item took: the run fails")


def test_last_line_names_failing_and_erroring_items():
    line = run_command.summary_line(Path("/r"), results("pass", "fail", "error"))
    assert line == (
        "results: /r/junit.xml  pass 1, fail 1 (gpio-sim-plug-cycle#1), "
        "error 1 (gpio-sim-plug-cycle#2)"
    )


def test_each_item_without_verdict_says_why_and_where_its_console_is():
    (line,) = run_command.error_lines(results("pass", "error"), Path("/r"))
    assert line == (
        "no verdict: gpio-sim-plug-cycle#1: the kernel did not reach the guest runner "
        "(timeout) (console: /r/boot-2.log)"
    )


def test_a_helper_module_that_did_not_build_costs_only_the_scenarios_that_load_it():
    scenarios = [
        load_scenario(SCENARIOS / f"{name}.yaml")
        for name in (
            "gpio-sim-remove-under-kernel-consumer",  # gpio_consumer holds a line
            "nvmem-wp-gpio-removed-under-writers",  # gpio_consumer registers the wp lookup
            "nvmem-in-kernel-consumer-unbind",  # nvmem_consumer
            "gpio-sim-plug-cycle",  # loads none
        )
    ]
    error = "gpio_consumer.c:147:13: error: void value not ignored as it ought to be (log: x)"
    lost = run_command.modules_lost(scenarios, {"gpio_consumer": error})
    assert sorted(lost) == [
        "gpio-sim-remove-under-kernel-consumer",
        "nvmem-wp-gpio-removed-under-writers",
    ]
    assert lost["nvmem-wp-gpio-removed-under-writers"] == (
        f"helper module gpio_consumer did not build against this tree: {error}"
    )
    assert run_command.modules_lost(scenarios, {}) == {}

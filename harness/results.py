"""What running scenarios produces, for every stage and command that reads it.

An item is one repetition of one scenario; its result is the verdict, the
guest's own account and the splats attributed to it; a boot record is what
one boot did. Series, bisection, merge and the writers read these and never
the runner that made them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from guest.protocol import ItemReport
from harness import splats
from harness.scenario import Scenario
from harness.splats import Splat


@dataclass(frozen=True)
class Item:
    """One repetition of one scenario (one JUnit testcase)."""

    id: str
    scenario: Scenario
    repetition: int
    seed: int

    def plan_entry(self) -> dict:
        return {
            "id": self.id,
            "scenario": self.scenario.to_json(),
            "repetition": self.repetition,
            "seed": self.seed,
        }


@dataclass
class ItemResult:
    item: Item
    status: str = "error"  # pass | fail | error | skipped (not run: enough was seen)
    guest: ItemReport | None = None  # what the guest said of it (None: it said nothing)
    splats: list[Splat] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    error: str | None = None
    console: str = ""
    boot: int = 0
    duration_s: float = 0.0
    first_splat_s: float | None = None  # kernel time from the scenario's start to its first splat


@dataclass
class BootRecord:
    index: int
    console: str
    cmdline: tuple[str, ...]
    seconds_to_ready: float | None
    ended: str
    qemu_command: str = ""
    outside_splats: list[Splat] = field(default_factory=list)
    accel: str = ""
    why: str = ""  # why this boot happened (first boot of a command line, a reboot after ...)
    left_because: str = ""  # why items were left for another boot, if any
    ended_by: str = ""  # the item that ended this boot (crashed it, tainted it), if any


def expand(scenarios: list[Scenario], repeat: int | None, seed: int | None) -> list[Item]:
    items = []
    for sc in scenarios:
        count = repeat or sc.repeat
        for rep in range(count):
            item_id = sc.name if count == 1 else f"{sc.name}#{rep}"
            base = sc.seed if seed is None else seed
            items.append(Item(item_id, sc, rep, base + rep))
    return items


def kernel_reports(result: ItemResult) -> list[Splat]:
    """The item's splats less the harness's own timeout dumps, which blame no kernel."""
    return [s for s in result.splats if s.kind != splats.TIMEOUT]


def decide(result: ItemResult) -> None:
    """The status from what the result holds: kernel reports, an error, violations, or none.

    A kernel report fails the item even when it also has an error: a scenario whose
    fixture could not come up because an earlier removal hung the kernel (the hung-task
    report names where) has a verdict, the kernel's bug, not "no verdict".
    """
    if kernel_reports(result):
        result.status = "fail"
    elif result.error:
        result.status = "error"
    elif result.violations:
        result.status = "fail"
    elif result.splats:
        result.status = "error"
        result.error = (
            f"{result.splats[0].title}: the harness ran out of time and dumped the blocked "
            "tasks, but no kernel detector fired and no call into the kernel was seen stuck"
        )
    else:
        result.status = "pass"

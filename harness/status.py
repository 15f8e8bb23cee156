"""Exit statuses of every command, and the error a stage raises to end one with a status.

One table for all commands, so a CI script reads the same number the same
way whatever it ran; `harness bisect` names its own two meanings of 0 and 1.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    PASS = 0  # every item has a verdict and passed
    FAIL = 1  # every item has a verdict; some failed
    BAD_INPUT = 2  # scenario, option or input file is wrong
    BUILD = 3  # configuration or kernel build failed
    NO_VERDICT = 4  # some items got no verdict (no boot, no guest result, harness problem)
    NOTHING_RAN = 5  # every selected item was skipped (or none was selected): nothing tested
    INTERRUPTED = 130
    FOUND = 0  # bisect: a culprit for every bug
    INCONCLUSIVE = 1  # bisect: some bug got no culprit


class PipelineError(Exception):
    """A stage that cannot go on: its message for the user and the status to end with."""

    def __init__(
        self,
        message: str,
        code: int = Exit.BAD_INPUT,
        build_s: float | None = None,
        summary: str | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.build_s = build_s  # seconds a failed build ran, when it got that far
        self.summary = summary or message.splitlines()[0]  # one line for each 'no verdict'

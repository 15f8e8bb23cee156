"""The shape of harness/ is kept by tooling, not by memory: the import-linter
contracts in pyproject.toml (harness: cli -> commands -> stages -> runner -> leaves;
guest: runner -> fixtures, workers -> adapters -> provider; no imports of the host's, no
circles among the leaves) must all hold, so an upward import fails here."""

import os
from pathlib import Path

from importlinter import cli

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold(capsys):
    cwd = os.getcwd()
    os.chdir(ROOT)  # the contracts name modules as imported from the project root
    try:
        code = cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "0 broken" in out

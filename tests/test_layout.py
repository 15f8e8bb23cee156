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


# The runner and pipeline paths: what a newcomer reads to follow one run.
SHORT = [
    "harness/runner.py",
    "harness/bootfold.py",
    "harness/stages.py",
    "harness/commands/run.py",
    "guest/runner.py",
]


def test_no_function_in_the_runner_and_pipeline_paths_is_over_60_lines():
    import ast

    long = []
    for name in SHORT:
        for node in ast.walk(ast.parse((ROOT / name).read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{name}:{node.lineno} {node.name}: {lines} lines")
    assert not long, long


def test_every_package_is_installed_so_the_harness_command_runs_from_anywhere():
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        str(init.parent.relative_to(ROOT)).replace("/", ".")
        for top in ("harness", "guest")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found == listed

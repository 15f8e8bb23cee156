"""The pipeline examples in examples/pipelines/ pass their engines' own checks (actionlint
with ShellCheck, GitLab's CI schema), and every harness command in them is one the CLI takes."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from tests.harnesscli import parse

CI_DIR = Path(__file__).resolve().parents[1] / "examples" / "pipelines"
GITLAB = CI_DIR / "gitlab-ci.yml"
GITHUB = CI_DIR / "github-actions.yml"
# The engines' shard variables, as a job would expand them; anything else is a word.
SHARD_VARIABLES = {
    '"$CI_NODE_INDEX/$CI_NODE_TOTAL"': "2/4",
    "${{ matrix.shard }}/${{ strategy.job-total }}": "2/4",
}
VARIABLE = re.compile(r"\$\{\{[^}]*\}\}|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")
# The linters, pinned in pyproject.toml's test extra, beside this interpreter.
TOOLS = Path(sys.executable).parent
# The jobs that boot, and so want the runner's KVM.
BOOTING_JOBS = ("scenarios", "series")


def _shell_lines(node) -> list[str]:
    """Every shell line of a loaded CI file: GitLab script lists, GitHub `run:` blocks."""
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("script", "before_script") and isinstance(value, list):
                out += [line for entry in value for line in str(entry).splitlines()]
            elif key == "run" and isinstance(value, str):
                out += value.splitlines()
            else:
                out += _shell_lines(value)
    elif isinstance(node, list):
        for value in node:
            out += _shell_lines(value)
    return out


def harness_commands(path: Path) -> list[list[str]]:
    """The argv of each `harness ...` the file runs, variables expanded to sample values."""
    commands = []
    for line in _shell_lines(yaml.safe_load(path.read_text())):
        if not line.strip().startswith("harness "):
            continue
        for variable, value in SHARD_VARIABLES.items():
            line = line.replace(variable, value)
        line = VARIABLE.sub("X", line)
        words = []
        for word in shlex.split(line):
            if word in ("||", "&&", "|", ">", ";"):
                break
            words.append(word)
        commands.append(words[1:])
    return commands


@pytest.mark.parametrize("path", [GITLAB, GITHUB], ids=["gitlab", "github"])
def test_every_harness_command_parses(path):
    commands = harness_commands(path)
    assert {c[0] for c in commands} == {"build", "run", "merge", "series"}, commands
    for argv in commands:
        ctx = parse(argv)
        if argv[0] == "run":
            assert ctx.params["kernel"] and ctx.params["shard_spec"] is not None, argv
        if argv[0] == "build":
            assert ctx.params["artifact"], argv


def test_shards_use_the_engines_own_variables():
    assert '--shard "$CI_NODE_INDEX/$CI_NODE_TOTAL"' in GITLAB.read_text()
    assert "--shard ${{ matrix.shard }}/${{ strategy.job-total }}" in GITHUB.read_text()


def test_gitlab_pipeline_shape():
    pipeline = yaml.safe_load(GITLAB.read_text())
    assert pipeline["scenarios"]["parallel"] > 1
    assert pipeline["report"]["when"] == "always"
    assert pipeline["report"]["artifacts"]["reports"]["junit"] == "results/junit.xml"
    assert pipeline["build-kernel"]["cache"]["paths"] == [".ccache/"]
    rules = pipeline["series"]["rules"][0]["if"]
    assert "merge_request_event" in rules


def test_github_workflow_shape():
    flow = yaml.safe_load(GITHUB.read_text())
    jobs = flow["jobs"]
    assert len(jobs["scenarios"]["strategy"]["matrix"]["shard"]) > 1
    assert jobs["report"]["if"] == "always()"
    assert any("action-junit-report" in s.get("uses", "") for s in jobs["report"]["steps"])
    assert any(s.get("uses", "").startswith("actions/cache") for s in jobs["build-kernel"]["steps"])
    assert jobs["series"]["if"] == "github.event_name == 'pull_request'"


def test_a_wrong_option_would_be_caught():
    """The check above is only worth something if a misspelt option fails it."""
    with pytest.raises(click.UsageError):
        parse(["run", "--kernell", "k.tar.gz"])
    with pytest.raises(click.BadParameter):
        parse(["run", "--kernel", "k.tar.gz", "--shard", "0/4"])


def _tool(name: str) -> str:
    path = TOOLS / name
    assert path.exists(), f"{path} is missing: `make venv` installs the test extra"
    return str(path)


def actionlint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_tool("actionlint"), "-no-color", "-shellcheck", _tool("shellcheck"), str(path)],
        capture_output=True,
        text=True,
    )


def gitlab_schema(path: Path) -> subprocess.CompletedProcess:
    """GitLab's own CI schema (app/assets/javascripts/editor/schema/ci.json), as vendored
    by check-jsonschema: what GitLab's pipeline editor and gitlab-ci-local check against."""
    return subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", str(path)],
        capture_output=True,
        text=True,
    )


def test_github_workflow_passes_actionlint():
    done = actionlint(GITHUB)
    assert done.returncode == 0, done.stdout + done.stderr


def test_gitlab_file_passes_gitlab_schema():
    done = gitlab_schema(GITLAB)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_linters_catch_a_mistake(tmp_path):
    """A misspelt matrix property and a misspelt job keyword: both checks must fail them."""
    flow = tmp_path / "flow.yml"
    flow.write_text(
        GITHUB.read_text().replace("--out shard-${{ matrix.shard }}", "--out ${{ matrix.shrd }}")
    )
    done = actionlint(flow)
    assert done.returncode == 1 and 'property "shrd" is not defined' in done.stdout, done.stdout
    pipeline = tmp_path / "gitlab-ci.yml"
    pipeline.write_text(GITLAB.read_text().replace("  parallel: 4", "  paralel: 4"))
    done = gitlab_schema(pipeline)
    assert done.returncode == 1 and "'paralel' was unexpected" in done.stdout, done.stdout


def test_github_boot_jobs_get_the_runners_kvm():
    """--privileged hands the container /dev/kvm where the runner has it, and only there."""
    jobs = yaml.safe_load(GITHUB.read_text())["jobs"]
    for name, job in jobs.items():
        options = job["container"].get("options", "") if isinstance(job["container"], dict) else ""
        assert ("--privileged" in options) == (name in BOOTING_JOBS), name
        assert "--device" not in options, "fails the job on a runner without /dev/kvm"


def test_gitlab_documents_the_kvm_runner_tag():
    """Shared runners have no KVM: the tag that picks a runner with /dev/kvm is one line away."""
    text = GITLAB.read_text()
    assert yaml.safe_load(text)[".kvm-runner"]["tags"] == ["kvm"]
    assert 'devices = ["/dev/kvm"]' in text and "extends: .kvm-runner" in text

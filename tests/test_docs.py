"""Every `harness` command line in the README and docs/ is one the CLI takes: the shell
blocks are read as a user would copy them, and each command is parsed (not run), so
a renamed option or command fails here before it misleads anyone."""

import re
import shlex
from pathlib import Path

import click

from tests.harnesscli import parse

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(?:sh|bash|console)\n(.*?)^```", re.S | re.M)
COMMAND = re.compile(r"\$\([^()]*\)")  # $(harness fetch 7.3): a path
VARIABLE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")  # $CI_NODE_INDEX: a number
HARNESS = ("harness", ".venv/bin/harness")


def documented_commands() -> list[tuple[str, list[str]]]:
    """(page, argv after `harness`) for each harness command in a shell block."""
    found = []
    for page in PAGES:
        for block in BLOCK.findall(page.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(VARIABLE.sub("2", COMMAND.sub("X", line)), comments=True)
                while words and "=" in words[0] and not words[0].startswith("-"):
                    words = words[1:]  # VAR=value before the command
                if not words or words[0] not in HARNESS:
                    continue
                argv = []
                for word in words[1:]:
                    if word in ("||", "&&", "|", ">", ";"):
                        break
                    argv.append(word)
                found.append((page.name, argv))
    return found


def test_every_documented_harness_command_parses():
    commands = documented_commands()
    names = {argv[0] for _, argv in commands if argv}
    assert {"run", "series", "bisect", "build", "merge", "log", "check"} <= names, names
    for page, argv in commands:
        try:
            parse(argv)
        except click.BadParameter as exc:
            # an example's input file (some-console.log) need not exist; any other value must
            if "does not exist" not in str(exc):
                raise AssertionError(f"{page}: harness {shlex.join(argv)}: {exc}") from exc
        except Exception as exc:  # click's usage errors, an unknown command
            raise AssertionError(f"{page}: harness {shlex.join(argv)}: {exc}") from exc


def test_the_readme_links_every_page_in_docs():
    readme = (ROOT / "README.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in readme, page.name

"""The README's CLI reference is the parsers' own usage; the CLI's help says what each command does."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from langchain_energyrouter import __version__
from langchain_energyrouter.cli import main
from langchain_energyrouter.cli.reference import BEGIN, END, command_parsers, readme_block

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_reference_is_generated_from_the_parsers() -> None:
    text = README.read_text(encoding="utf-8")
    block = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert block == readme_block(), "run `python -m langchain_energyrouter.cli.reference --write README.md`"
    for required in ("--raw NAME=PATH", "--cv {auto,grouped,blocked,forward,random}", "[--models MODELS]"):
        assert required in block


def test_every_energyrouter_command_in_the_readme_parses() -> None:
    # Commands written elsewhere in the README (bash blocks, prose) name options the parsers know.
    text = README.read_text(encoding="utf-8").replace("\\\n", " ")
    parsers = command_parsers()
    seen = 0
    for line in re.findall(r"^energyrouter (\w+) (.*)$", text, re.MULTILINE):
        name, rest = line
        if name not in parsers or "[" in rest or "|" in rest:
            continue  # the generated usage lines, with their brackets
        parsers[name].parse_args(shlex.split(rest.split("#")[0]))
        seen += 1
    assert seen >= 3


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"energyrouter {__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", __version__)


@pytest.mark.parametrize("command", ["accuracy", "explain", "plot", "demo"])
def test_help_describes_the_command_in_plain_text(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    description = out.split("\n\n")[1]
    assert len(description.split()) > 10, out
    assert "``" not in out and ":class:" not in out and ":mod:" not in out

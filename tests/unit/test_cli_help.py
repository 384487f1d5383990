"""Every command's --help is plain text: no reStructuredText markup reaches an operator."""

from __future__ import annotations

import re
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from vidgo_stems.cli import main

#: reStructuredText as docstrings write it: literals and interpreted text (any backtick),
#: roles (:func:, :mod:, :class:, ...), directives, hyperlink targets, section underlines.
RST = re.compile(r"`|:[a-z]+:(?=`)|^\s*\.\. \S|\b_`|^\s*([=~^\"'-])\1{3,}\s*$", re.M)


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every command under ``group``, the group itself first."""
    yield path
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name)


ALL = list(commands(main))


def test_the_walk_finds_every_command():
    assert {"worker", "gateway", "separate", "status", "purge", "batch"} <= {
        p[-1] for p in ALL if p
    }


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "vidgo-stems")
def test_help_is_plain_text(path):
    result = CliRunner().invoke(main, [*path, "--help"], prog_name="vidgo-stems")
    assert result.exit_code == 0, result.output
    assert "Usage: vidgo-stems" in result.output
    found = [m.group(0) for m in RST.finditer(result.output)]
    assert not found, f"markup {found} in:\n{result.output}"

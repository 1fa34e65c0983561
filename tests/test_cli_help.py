"""`--help` renders each docstring paragraph as one paragraph: no sentence cut mid-line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hybridtmd.cli import app
from hybridtmd.cli.common import reflow

COMMANDS = {info.name: info.callback for info in app.registered_commands}


def test_reflow_keeps_paragraphs_and_joins_lines():
    assert reflow("One line\n    continues here.\n\n    Second\n    paragraph.") == (
        "One line continues here.\n\nSecond paragraph.")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_paragraphs_are_whole(name):
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    for paragraph in reflow(COMMANDS[name].__doc__).split("\n\n"):
        assert paragraph.strip() in lines, f"{name}: paragraph broken across lines: {paragraph[:60]!r}"

"""dwx list: one whole line per option, internal options hidden."""

from __future__ import annotations

import re

from runner.cli import CONFIG_DIR
from runner.listing import describe


def test_every_description_is_a_whole_line_and_internal_options_are_hidden(capsys):
    from runner.listing import list_configs

    assert list_configs(CONFIG_DIR) == 0
    listed = capsys.readouterr().out
    assert "select" not in listed  # mode=select only wires the mode group into the task's defaults
    cut = re.compile(r"\b(the|a|an|to|of|over|and|or|with|from|in|by|for|at|than)$")
    for path in CONFIG_DIR.rglob("*.yaml"):
        text = describe(path)
        assert not cut.search(text), f"{path}: the description stops mid-sentence: {text!r}"

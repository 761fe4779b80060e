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


def test_backends_show_what_they_serve_and_how_to_install_a_missing_one(capsys, tmp_path, monkeypatch):
    from runner.listing import backend_status, list_configs

    list_configs(CONFIG_DIR, "physics")
    list_configs(CONFIG_DIR, "renderer")
    out = capsys.readouterr().out
    assert re.search(r"^  mass_spring .*\[simulates springs\]$", out, re.M)
    assert re.search(r"^  soft_mesh .*\[draws meshes, textured meshes\]$", out, re.M)
    (tmp_path / "absent_engine.py").write_text('raise ImportError("absent_engine needs Foo: pip install foo")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    assert backend_status("physics", "absent_engine.Engine") == "[not installed: pip install foo]"

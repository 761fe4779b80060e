"""A backend or launcher whose optional package is not installed: one line naming what to install."""

from __future__ import annotations

from runner import cli
from tests.conftest import run_dwx


def test_a_backend_of_a_missing_extra_is_one_line_before_any_work(tmp_path):
    run_dir = tmp_path / "run"
    out = run_dwx("run", "task=pose_fit", "+physics._target_=optional_backend.Engine", f"hydra.run.dir={run_dir}",
                  toy=True)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        "dwx: error: physics: optional_backend needs FooLib: pip install foolib (the 'foo' extra of dwx)"
    ]
    assert not run_dir.exists()


def test_a_launcher_of_the_missing_extra_names_the_extra(monkeypatch):
    monkeypatch.setattr(cli, "_launchers_installed", lambda: False)
    hydra_says = Exception("Could not find 'hydra/launcher/joblib'\n\nAvailable options in 'hydra/launcher':\n"
                           "\tbasic\n\tslurm\n")
    message = str(cli._explain(hydra_says, ["hydra/launcher=joblib"], "config"))
    assert message.startswith("hydra/launcher=joblib needs the launcher plugins: pip install -e '.[launchers]'")
    monkeypatch.setattr(cli, "_launchers_installed", lambda: True)  # installed: a typo gets the usual answer
    assert str(cli._explain(hydra_says, [], "config")).startswith("unknown hydra/launcher 'joblib'")

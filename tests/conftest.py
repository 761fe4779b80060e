"""Shared fixtures: run the `dwx` CLI in a subprocess, locate the shared real data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from runner.logging import NullLogger

# Tests run tiny tensor ops, for which extra threads on a shared 2-core machine only add contention
# (measured up to 100x slower); subprocesses started by the tests choose their own thread count.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SHARED_DATA = ROOT.parent / "shared" / "data"
# configs of optional backends -> the module each needs (its package is an extra: CI installs every one)
OPTIONAL_CONFIGS = {"physics/warp_springs": "warp", "physics/newton": "newton", "renderer/mitsuba": "mitsuba"}


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one test worker per core this process may use (at most 4). Most of the suite's time is
    CLI subprocesses on one thread each, which two cores run side by side (7 minutes instead of 11 here)."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


def dwx_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(FIXTURES), str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("HYDRA_FULL_ERROR", None)
    env.setdefault("OMP_NUM_THREADS", "1")  # tiny test configs: threads only add contention
    env.update(extra)
    return env


def run_dwx(
    *args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None, toy: bool = False
) -> subprocess.CompletedProcess:
    """Run ``dwx ARGS`` (``python -m runner.cli``) and return the completed process (text output)."""
    cmd = [sys.executable, "-m", "runner.cli", *args]
    if toy:  # the test-local task lives in tests/fixtures/configs
        i = cmd.index("run") + 1
        cmd[i:i] = ["--config-dir", str(FIXTURES / "configs")]
    return subprocess.run(cmd, cwd=cwd or ROOT, env=env or dwx_env(), capture_output=True, text=True, timeout=timeout)


def compose_config(overrides: list[str]):
    """The config ``dwx run OVERRIDES`` composes (configs/, without a run: no Hydra runtime keys)."""
    from hydra import compose, initialize_config_dir

    from runner.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def in_ci() -> bool:
    """Whether the ``CI`` environment variable says this is CI (``CI=true``, as CI services and .ci/run set it)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_tool(reason: str) -> None:
    """An optional package or program a test needs is absent: skip with ``reason`` on a developer's machine,
    fail under CI, which installs every extra (a missing install must not pass silently)."""
    if in_ci():
        pytest.fail(
            f"{reason}; CI is set, where every extra is installed, so this fails instead of skipping", pytrace=False
        )
    pytest.skip(reason, allow_module_level=True)


def read_metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data; skips the test with the reason when it is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (it lies beside the checkout in CI)")
    return path


class RecordingLogger(NullLogger):
    """A logger that keeps what a loop or a task logs, for tests to read back.

    Attributes:
        scalars_at: ``{step: {tag: value}}`` of every scalar logged.
        images_by_tag, videos_by_tag: the last (N, H, W, 3) images / (T, H, W, 3) frames logged under each tag.
    """

    def __init__(self):
        self.scalars_at: dict[int, dict[str, float]] = {}
        self.images_by_tag: dict[str, torch.Tensor] = {}
        self.videos_by_tag: dict[str, torch.Tensor] = {}

    def scalars(self, values, step):
        self.scalars_at.setdefault(step, {}).update(values)

    def images(self, tag, images, step, max_images=4):
        self.images_by_tag[tag] = images

    def video(self, tag, frames, step, fps=15):
        self.videos_by_tag[tag] = frames


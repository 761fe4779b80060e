"""A run folder is data, never code: `dwx predict RUN_DIR` and `dwx run resume=RUN_DIR` on a crafted folder.

Each crafted folder must be refused with one line and exit 2 before anything runs: the marker file its
payload would create must not exist and the folder must not change.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from runner.cli import _with_resume
from runner.errors import InputError
from tasks.depth_from_video.models import DepthNet
from tasks.depth_from_video.predict import build_depth_net, trained_size
from tests.conftest import run_dwx

DEPTH_NET = "tasks.depth_from_video.models.DepthNet"
TINY_NET = {"encoder_channels": [4, 4, 4, 4, 4], "decoder_channels": [4, 4, 4, 4, 4], "num_scales": 2}


class _TouchOnUnpickle:
    """A pickle that creates a file when loaded: the payload a run folder could smuggle through torch.load."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return Path.touch, (self.path,)


def _touch(marker: Path) -> dict:
    """A config node that creates ``marker`` when Hydra instantiates it."""
    return {"_target_": "pathlib.Path.touch", "self": {"_target_": "pathlib.Path", "_args_": [str(marker)]}}


def _one_error_line(out) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("dwx: error: "), (out.stdout, out.stderr)
    return lines[0]


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def _predict_folder(tmp_path: Path, depth_net: dict, size: object = (32, 96)) -> tuple[Path, Path]:
    """A depth_from_video run folder with this task.depth_net and data.image_size, and a folder of 2 frames."""
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "artifacts").mkdir()
    cfg = {"data": {"image_size": list(size)},
           "task": {"_target_": "tasks.depth_from_video.task.DepthFromVideo", "depth_net": depth_net}}
    OmegaConf.save(OmegaConf.create(cfg), run_dir / ".hydra" / "config.yaml")
    weights = {"depth_net": DepthNet(**TINY_NET).state_dict(), "min_depth": 0.1, "max_depth": 100.0}
    torch.save(weights, run_dir / "artifacts" / "weights.pt")
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(2):
        iio.imwrite(frames / f"{t:03d}.png", np.full((32, 96, 3), 40 * t, np.uint8))
    return run_dir, frames


def _payload(tmp_path: Path, kind: str) -> dict:
    marker = tmp_path / "marker"
    if kind == "callable":
        return _touch(marker)
    if kind == "pickle":
        (tmp_path / "payload.pkl").write_bytes(pickle.dumps(_TouchOnUnpickle(marker)))
        return {"_target_": "torch.load", "f": str(tmp_path / "payload.pkl"), "weights_only": False}
    return {"_target_": DEPTH_NET, **TINY_NET, "encoder_channels": _touch(marker)}  # nested in an argument


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("callable", "task.depth_net._target_ is 'pathlib.Path.touch', not one of dwx's networks"),
        ("pickle", "task.depth_net._target_ is 'torch.load', not one of dwx's networks"),
        ("nested", "task.depth_net.encoder_channels must be a list of int, got {'_target_'"),
    ],
)
def test_predict_refuses_a_depth_net_that_names_other_code(tmp_path, kind, expected):
    run_dir, frames = _predict_folder(tmp_path, _payload(tmp_path, kind))
    before = _files(run_dir)
    out = run_dwx("predict", str(run_dir), str(frames), "--out", str(tmp_path / "pred"))
    assert expected in _one_error_line(out)
    assert not (tmp_path / "marker").exists() and not (tmp_path / "pred").exists()
    assert _files(run_dir) == before


def test_predict_refuses_a_bad_image_size_in_one_line(tmp_path):
    run_dir, frames = _predict_folder(tmp_path, {"_target_": DEPTH_NET, **TINY_NET}, size=(-32, 96))
    out = run_dwx("predict", str(run_dir), str(frames), "--out", str(tmp_path / "pred"))
    assert "data.image_size must be a height H or [H, W] in pixels (positive integers), got [-32, 96]" in (
        _one_error_line(out)
    )


def test_predict_on_a_legitimate_run_folder_writes_depth(tmp_path):
    run_dir, frames = _predict_folder(tmp_path, {"_target_": DEPTH_NET, **TINY_NET, "init_disparity": None})
    out = run_dwx("predict", str(run_dir), str(frames), "--out", str(tmp_path / "pred"))
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "pred").glob("*.npy"))) == 2


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"separable": True, "foo": 1}, "task.depth_net.foo: tasks.depth_from_video.models.DepthNet takes no such"),
        ({"_partial_": True}, "task.depth_net._partial_: tasks.depth_from_video.models.DepthNet takes no such"),
        ({"num_scales": True}, "task.depth_net.num_scales must be int, got True"),
        ({"num_scales": 2.0}, "task.depth_net.num_scales must be int, got 2.0"),
        ({"separable": "yes"}, "task.depth_net.separable must be bool, got 'yes'"),
        ({"init_disparity": "${oc.env:HOME}"}, "task.depth_net.init_disparity must be float or null, got '${oc.env"),
        ({"decoder_norm": "group"}, "task.depth_net.decoder_norm must be 'batch' or 'none', got 'group'"),
        ({"encoder_channels": [16, "32"]}, "task.depth_net.encoder_channels must be a list of int, got [16, '32']"),
    ],
)
def test_depth_net_arguments_are_checked_against_the_constructor(spec, expected):
    with pytest.raises(InputError) as e:
        build_depth_net({"_target_": DEPTH_NET, **spec})
    assert expected in str(e.value)


def test_depth_net_and_image_size_from_a_valid_config():
    net = build_depth_net({"_target_": DEPTH_NET, **TINY_NET, "init_disparity": 0.05, "decoder_norm": "batch"})
    assert isinstance(net, DepthNet) and net.num_scales == 2 and net.init_disparity == 0.05

    def config(size: object) -> DictConfig:
        return OmegaConf.create({"data": {"image_size": size}})

    assert trained_size(config([64, 192]), {}) == (64, 192)  # a run from before weights.pt held its size
    assert trained_size(config(64), {"image_size": [64, 192]}) == (64, 192)  # the size it trained at
    with pytest.raises(InputError, match="does not say the image size the run trained at"):
        trained_size(config(64), {})
    for bad in ([64], [64, 0], [64.0, 192], [True, 192], "64x192", None):
        with pytest.raises(InputError, match=r"data.image_size must be a height H or \[H, W\]"):
            trained_size(config(bad), {})


def _resume_folder(tmp_path: Path, overrides: object) -> Path:
    """A stopped pose_fit run folder whose .hydra/overrides.yaml holds ``overrides``, and a dummy checkpoint."""
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"not read before the overrides are checked")
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return run_dir


def _evil(tmp_path: Path) -> str:
    """An override that makes ``task=`` load a YAML file of the folder (which calls Path.touch) by a path."""
    (tmp_path / "evil.yaml").write_text(OmegaConf.to_yaml(_touch(tmp_path / "marker")))
    return "task=" + "../" * 30 + str(tmp_path / "evil").lstrip("/")


@pytest.mark.parametrize(
    "override, expected",
    [
        ("+hydra.job.env_set.DWX_X=1", "which changes Hydra's own config"),
        ("hydra/launcher=joblib", "which changes Hydra's own config"),
        ("hydra.searchpath=[file:///tmp]", "which changes Hydra's own config"),
        ("+task.depth_net._target_=pathlib.Path.touch", "which names a class or function to instantiate"),
        ("payload", "which names a class or function to instantiate"),
        ("traversal", "which is not a plain key=value"),
        ("+task.home=${oc.env:HOME}", "which holds an interpolation"),
        ("--config-dir=/tmp", "which is not a plain key=value"),
    ],
)
def test_resume_refuses_saved_overrides_that_could_run_code(tmp_path, override, expected):
    marker = tmp_path / "marker"
    if override == "payload":
        override = "+task.payload=" + str(_touch(marker)).replace("'", "").replace(" ", "")
    elif override == "traversal":
        override = _evil(tmp_path)
    run_dir = _resume_folder(tmp_path, ["task=pose_fit", "loop.steps=5", override])
    before = _files(run_dir)
    out = run_dwx("run", f"resume={run_dir}", toy=True)
    line = _one_error_line(out)
    assert line.startswith(f"dwx: error: resume: {run_dir / '.hydra' / 'overrides.yaml'} holds the override")
    assert expected in line
    assert not marker.exists()
    assert _files(run_dir) == before


@pytest.mark.parametrize("saved", [{"task": "pose_fit"}, ["task=pose_fit", 3], "task=pose_fit"])
def test_resume_refuses_saved_overrides_that_are_not_a_list_of_strings(tmp_path, saved):
    run_dir = _resume_folder(tmp_path, saved)
    with pytest.raises(InputError, match="is not a list of override strings"):
        _with_resume([f"resume={run_dir}"])


def test_resume_reapplies_the_plain_overrides_a_run_records(tmp_path):
    saved = ["task=pose_fit", "+task.extra=1", "~task.noise", "data.root=../shared/data/x", f"resume={tmp_path}"]
    run_dir = _resume_folder(tmp_path, saved)
    assert _with_resume([f"resume={run_dir}", "loop.steps=9"]) == [
        "task=pose_fit", "+task.extra=1", "~task.noise", "data.root=../shared/data/x", "loop.steps=9",
        f"resume={run_dir}", f"hydra.run.dir={run_dir}",
    ]


def test_experimental_rerun_of_a_pickled_config_is_refused(tmp_path):
    """Hydra's --experimental-rerun unpickles the file it is given (a run folder's .hydra/config.pickle)."""
    marker = tmp_path / "marker"
    pickled = tmp_path / "config.pickle"
    pickled.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    out = run_dwx("run", "--experimental-rerun", str(pickled))
    assert _one_error_line(out).startswith("dwx: error: --experimental-rerun is refused")
    assert not marker.exists()

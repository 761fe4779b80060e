"""depth_from_video end to end: a tiny real training run, the CLI, artifacts, prediction, bad input."""

from __future__ import annotations

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from runner import visuals
from runner.errors import ConfigError, InputError, find_user_error
from runner.geometry.warping import resize_intrinsics
from runner.logging import NullLogger
from tasks.depth_from_video.artifacts import truth_panels
from tasks.depth_from_video.models import disp_to_depth
from tests.conftest import RecordingLogger, compose_config, read_metrics, run_dwx


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DWX_CACHE", str(tmp_path / "cache"))


def _override(value) -> str:
    """A Python value as a Hydra override value."""
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_override(v) for v in value) + "]"
    return str(value)


def tiny_task(frames=12, image_size=(32, 96), **task_keys):
    """The task as `dwx run task=depth_from_video experiment=depth_tiny` builds it, with ``task_keys`` as
    ``task.<key>=<value>`` overrides (``depth_net.init_disparity`` as ``init_disparity``; a dict value as one
    ``task.<key>.<name>=<value>`` override per entry, e.g. ``losses={"scale_anchor": 1.0}``)."""
    overrides = [
        "task=depth_from_video",
        "experiment=depth_tiny",
        f"data.frames_per_sequence={frames}",
        f"data.image_size={_override(image_size)}",
    ]
    if "init_disparity" in task_keys:
        overrides.append(f"task.depth_net.init_disparity={_override(task_keys.pop('init_disparity'))}")
    for key, value in task_keys.items():
        entries = value.items() if isinstance(value, dict) else [(None, value)]
        overrides += [f"task.{key}{'' if name is None else '.' + name}={_override(v)}" for name, v in entries]
    return build(overrides)


def build(overrides: list[str]):
    """The task of the config the Hydra ``overrides`` compose; the task's own error where it refuses them."""
    try:
        return instantiate(compose_config(overrides).task, _convert_="all")
    except Exception as e:  # Hydra wraps the task's own error; tests expect that one, as the CLI shows it
        raise (find_user_error(e) or e) from None


def test_the_ground_truth_pose_and_depth_explain_the_target():
    """With true depth and true relative pose the warped source reproduces the target photometrically."""
    from runner.geometry.warping import warp_frame
    from runner.losses.photometric import photometric_error

    task = tiny_task(image_size=(64, 192))
    task.setup(torch.device("cpu"))
    seq = task.splits.train[0]
    t = 5
    depth = seq.depth[t][None, None]
    src_from_dst = (seq.cam_from_world[t + 1] @ torch.linalg.inv(seq.cam_from_world[t]))[None]
    warped, valid = warp_frame(seq.frames[t + 1][None], depth, src_from_dst, seq.K[None])
    err = photometric_error(warped, seq.frames[t][None])
    wrong, _ = warp_frame(seq.frames[t + 1][None], depth * 0.5, src_from_dst, seq.K[None])
    err_wrong = photometric_error(wrong, seq.frames[t][None])
    m = valid.bool()
    assert err[m].median() < 0.05 and err[m].mean() < 0.5 * err_wrong[m].mean()


def test_relative_poses_of_a_batch_of_pairs_equal_one_pair_at_a_time():
    """All pairs in one PoseNet call give each pair's own motion; a past source gets the inverse of the
    motion of the pair read in temporal order."""
    task = tiny_task()
    task.setup(torch.device("cpu"))
    frames = task.splits.train[0].frames
    target, before, after = frames[4:6], frames[2:4], frames[6:8]
    both = task.relative_poses(target, [before, after], [-2, 2])
    alone = [task.relative_poses(target, [src], [o])[0] for src, o in ((before, -2), (after, 2))]
    for a, b in zip(both, alone):
        assert a.shape == (2, 4, 4) and torch.allclose(a, b, atol=1e-5)
    # the same pair read from the past frame: target_from_before, the inverse of before_from_target
    forward = task.relative_poses(before, [target], [2])[0]
    assert torch.allclose(both[0] @ forward, torch.eye(4).expand(2, 4, 4), atol=1e-5)
    assert not torch.allclose(forward, torch.eye(4).expand(2, 4, 4), atol=1e-4)  # a real motion, not identity


def test_training_lowers_the_loss_and_evaluates_every_metric():
    """300 steps of the tiny networks lower the photometric loss by more than 20 % (last/first 20 steps
    0.57-0.76 over seeds 0-3 with native kernels, 0.66 on seed 0 with ATEN_CPU_CAPABILITY=default) and
    evaluation reports every metric.

    Whether they also beat the constant-depth baseline in 300 steps depends on the seed and on the CPU's
    maths kernels: on 2026-12-07 (AMD EPYC, 2 cores) seeds 0-3 gave abs_rel 0.60 / 0.92 / 0.40 / 0.67 against
    0.515 (seed 0 with ATEN_CPU_CAPABILITY=default: 0.50), where another machine gave 0.33-0.41; so this is
    not asserted here. Depth accuracy is measured by benchmarks/depth.py on the default configuration.
    """
    torch.manual_seed(0)
    task = tiny_task()
    task.setup(torch.device("cpu"))
    opt = torch.optim.Adam(task.parameters(), lr=2e-3)
    losses = []
    for step in range(300):
        opt.zero_grad()
        total = sum(task.loss(step).values())
        total.backward()
        opt.step()
        losses.append(total.item())
    with torch.no_grad():
        metrics = task.evaluate()
    assert np.mean(losses[-20:]) < 0.8 * np.mean(losses[:20])
    assert math.isfinite(metrics["abs_rel"]) and math.isfinite(metrics["baseline_abs_rel"]), metrics
    assert {"sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "ate", "baseline_a1"} <= set(metrics)
    assert metrics["saturated"] < 0.1, metrics  # a trained net uses its depth range


def test_a_collapsed_coarse_output_is_reported_and_warned(caplog):
    # the failure seen on seed 5 of the streets default: the 1/8 disparity head saturated at min_depth
    # (its sigmoid passes no gradient) while scale 0 still trained
    task = tiny_task(scales=(0, 3))
    task.setup(torch.device("cpu"))
    with torch.no_grad():
        task.depth_net.heads[3].bias.fill_(30.0)  # logit far past the sigmoid's range: disparity 1 everywhere
        metrics = task.evaluate()
    assert metrics["saturated_s3"] == 1.0 and metrics["saturated"] < 0.5, metrics
    assert "saturated_s1" not in metrics  # scale 1 is not in the loss
    assert "at scale 3 sit at task.min_depth" in caplog.text and "at scale 0" not in caplog.text


def test_the_scale_anchor_pulls_a_drifted_depth_scale_back_and_nothing_else():
    """Depth and translation scaled together leave the photometric loss unchanged; the anchor term holds
    that common scale at the start's disparity: zero there, positive and pulling back after a drift."""
    task = tiny_task(scales=(0, 1), init_disparity=0.05, losses={"scale_anchor": 1.0})
    task.setup(torch.device("cpu"))
    assert task.loss(0)["scale_anchor"].item() < 0.05  # the heads start at 0.05 (their weights add a spread)
    drifted = math.log(0.05 / 0.95) - 2.0  # every head's logit 2 lower: disparity ~7x smaller, depth ~7x larger
    for head in task.depth_net.heads:
        torch.nn.init.constant_(head.bias, drifted)
    terms = task.loss(0)
    assert terms["scale_anchor"].item() > 1.0  # (log 7)^2 = 3.8 at the sigmoid's tail, less through its bend
    terms["scale_anchor"].backward()
    assert all(head.bias.grad.item() < 0 for head in task.depth_net.heads[:2])  # descent raises the disparity
    assert task.depth_net.heads[2].bias.grad is None  # scale 2 is not in the loss


def test_visuals_and_artifacts(tmp_path):
    task = tiny_task()
    task.setup(torch.device("cpu"))
    task.loss(0)
    logger = RecordingLogger()
    with torch.no_grad():
        task.visuals(logger, 0)
    assert set(logger.images_by_tag) == {
        "test/input|prediction|truth|abs_rel",
        "train/target_vs_warped_source",
        "train/automask",
    }
    panel = logger.images_by_tag["test/input|prediction|truth|abs_rel"]
    # 4 test frames, each a row of 4 labelled 32x96 panels enlarged 8x, 3 of them with a colour bar
    assert panel.shape[0] == 4 and 256 < panel.shape[1] < 320 and panel.shape[2] > 4 * 768
    assert logger.images_by_tag["train/target_vs_warped_source"].shape[2] > 2 * 768
    task.save(tmp_path)
    state = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert set(state) == {"depth_net", "pose_net", "min_depth", "max_depth", "image_size"}
    assert state["image_size"] == [32, 96]  # what dwx predict and dwx export resize to
    name = task.splits.test[0].name
    depth = np.load(tmp_path / "test_depth" / name / "000000.npy")
    assert depth.shape == (32, 96) and (depth >= task.min_depth).all()
    preview = iio.imread(tmp_path / "test_depth" / name / "000000_color.png")  # what a person opens
    assert preview.shape == (256, 768, 3) and preview.dtype == np.uint8 and preview.std() > 0
    video = tmp_path / ("test_depth.mp4" if visuals.mp4_available() else "test_depth.gif")
    frames = iio.imread(video, index=None)  # every test frame: input | predicted inverse depth, labelled
    assert frames.shape[0] == len(task.splits.test[0]) and frames.shape[1] > 256 and frames.shape[2] > 2 * 768
    assert video.name in (tmp_path / "README.txt").read_text()


def test_prediction_and_truth_panels_share_one_colour_scale():
    task = tiny_task()
    gt = torch.linspace(2.0, 30.0, 32 * 96).reshape(1, 32, 96)
    gt[0, 0, :10] = 0  # no ground truth there
    prediction, truth, error = truth_panels(3 * gt.clamp(min=1.0), gt, task.eval_protocol)  # right but for the scale
    valid = gt > 0
    assert torch.allclose(prediction.images[valid], truth.images[valid], atol=1e-5)
    assert prediction.ticks == truth.ticks
    assert torch.all(truth.images[~valid] == visuals.NO_DATA) and torch.all(error.images[~valid] == visuals.NO_DATA)
    assert error.label == ["abs_rel error, mean 0.000"] and error.ticks == ("0", "0.5+")


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"image_size": (30, 96)},
            ConfigError,
            r"image size 30x96 is not divisible by 32.*32x96 or 32x96|nearest sizes",
        ),
        ({"frames": 4, "frame_window": (-2, 0, 2)}, InputError, "needs sequences of at least 5 frames"),
    ],
)
def test_bad_input(kwargs, error, message):
    with pytest.raises((error, ValueError), match=message):
        tiny_task(**kwargs).setup(torch.device("cpu"))


def test_bad_window_is_a_config_error():
    with pytest.raises(ConfigError, match="frame_window must hold 0"):
        tiny_task(frame_window=(-1, 1))
    with pytest.raises(ConfigError, match="scale_resolution must be full or native"):
        tiny_task(scale_resolution="half")
    with pytest.raises(ConfigError, match=r"warp_min_depth_ratio must be in \[0, 1\)"):
        tiny_task(warp_min_depth_ratio=1.0)
    with pytest.raises(ConfigError, match="set task.depth_net.init_disparity too"):
        tiny_task(losses={"scale_anchor": 0.01})


def test_loss_weights_name_every_term_and_only_those():
    terms = r"the terms are \['photometric', 'smoothness', 'scale_anchor'\]"
    with pytest.raises(ConfigError, match=r"task.losses: unknown term\(s\) \['silhouette'\]; " + terms):
        build(["task=depth_from_video", "experiment=depth_tiny", "+task.losses.silhouette=1.0"])
    with pytest.raises(ConfigError, match=r"weights must be numbers >= 0, got \{'scale_anchor': -1.0\}"):
        tiny_task(losses={"scale_anchor": -1.0}, init_disparity=0.05)
    assert build(["task=depth_from_video", "experiment=depth_tiny", "~task.losses.scale_anchor"]).objective.weights[
        "scale_anchor"
    ] == 0.0  # a term left out weighs 0
    assert tiny_task(losses={"smoothness": 0.0}).objective.weights == {
        "photometric": 1.0,
        "smoothness": 0.0,
        "scale_anchor": 0.0,
    }


def test_native_scales_compare_downsampled_frames():
    """scale_resolution=native: scale s warps frames area-downsampled by 2^s with its own disparity.

    The full-resolution term is the same in both modes (same batch, same weights); the coarse term
    differs, and it sends a gradient to the coarse disparity output.
    """
    full, native = tiny_task(), tiny_task(scale_resolution="native")
    native.load_state_dict(full.state_dict())
    photometric, coarse_grad = {}, {}
    for name, task in (("full", full), ("native", native)):
        task.setup(torch.device("cpu"))
        outputs = []  # the disparities of the last loss() call, keeping their gradients

        def keep(net, inputs, disparities, outputs=outputs):
            outputs[:] = disparities
            for d in disparities:
                d.retain_grad()

        task.depth_net.register_forward_hook(keep)
        for s in (0, 1):
            task.objective.scales = [s]
            loss = task.loss(0)["photometric"]
            loss.backward()
            photometric[name, s] = loss.item()
        coarse_grad[name] = outputs[1].grad.abs().sum().item()
    assert photometric["full", 0] == pytest.approx(photometric["native", 0], rel=1e-6)
    assert abs(photometric["full", 1] - photometric["native", 1]) > 1e-4 * photometric["full", 1]
    assert coarse_grad["native"] > 0 and coarse_grad["full"] > 0


def test_coarse_steps_train_on_downsampled_frames_with_matching_intrinsics():
    """task.coarse_steps: the first steps see the same snippets and flips area-downsampled by coarse_factor,
    with the intrinsics of the downsampled frames; later steps see full resolution."""
    full, coarse = tiny_task(image_size=(64, 192)), tiny_task(image_size=(64, 192), coarse_steps=2)
    full.setup(torch.device("cpu"))
    coarse.setup(torch.device("cpu"))
    flips = []
    for step in (0, 1, 2):
        (t_f, s_f, K_f, flip_f, _), (t_c, s_c, K_c, flip_c, _) = full.batch(step), coarse.batch(step)
        assert torch.equal(flip_f, flip_c)
        if step < 2:
            flips.append(flip_c)
            assert t_c.shape == (4, 3, 32, 96) and len(s_c) == 2
            for a, b in zip([t_f, *s_f], [t_c, *s_c]):
                assert torch.allclose(F.interpolate(a, size=(32, 96), mode="area"), b, atol=1e-6)
            assert torch.allclose(K_c, resize_intrinsics(K_f, (64, 192), (32, 96)))
        else:
            assert torch.equal(t_f, t_c) and torch.equal(K_f, K_c)
    flips = torch.cat(flips)
    assert flips.any() and not flips.all()  # the flipped principal point is downsampled too
    terms = coarse.loss(0)
    sum(terms.values()).backward()
    assert all(torch.isfinite(v) for v in terms.values())
    assert coarse.depth_net.heads[0].bias.grad.abs() > 0


def test_evaluation_in_the_coarse_phase_scores_the_network_at_the_coarse_size():
    task = tiny_task(image_size=(64, 192), coarse_steps=2)
    task.setup(torch.device("cpu"))
    frames = task.splits.test[0].frames[:2]
    task.batch(0)  # the coarse phase
    task.depth_net.eval()
    with torch.no_grad():
        depth = task.predict_depth(frames)
        at_coarse = task.depth_net(F.interpolate(frames, size=(32, 96), mode="area"))[0]
        upsampled = F.interpolate(at_coarse, size=(64, 192), mode="bilinear")
        assert depth.shape == (2, 64, 192)
        assert torch.allclose(depth, disp_to_depth(upsampled, task.min_depth, task.max_depth)[:, 0])
        metrics = task.evaluate()  # depth, saturation and pose ATE at the coarse size
        task.visuals(NullLogger(), 0)
        task.batch(2)  # the full-resolution phase
        at_full = task.depth_net(frames)[0]
        assert torch.allclose(task.predict_depth(frames), disp_to_depth(at_full, task.min_depth, task.max_depth)[:, 0])
    assert all(math.isfinite(metrics[k]) for k in ("abs_rel", "saturated", "ate"))


def test_a_run_no_longer_than_the_coarse_phase_trains_at_full_size(caplog):
    task = tiny_task(coarse_steps=300)
    task.plan(1000)
    assert task.coarse_phase.steps == 300
    task.plan(300)
    assert task.coarse_phase.steps == 0 and "covers the whole run (300 steps)" in caplog.text


def test_the_coarse_size_is_the_nearest_one_the_network_stride_takes():
    task = tiny_task(coarse_steps=10)
    assert task.coarse_phase.size(torch.zeros(1, 3, 64, 192)) == (32, 96)
    assert task.coarse_phase.size(torch.zeros(1, 3, 96, 320)) == (64, 160)  # 48 rounds up to 64, 160 is 5 x 32
    assert task.coarse_phase.size(torch.zeros(1, 3, 32, 96)) == (32, 64)  # never below the stride (16 -> 32)
    with pytest.raises(ConfigError, match="coarse_factor >= 1"):
        tiny_task(coarse_steps=10, coarse_factor=0.5)


@pytest.mark.slow
def test_cli_run_export_and_predict(tmp_path):
    env_cache = {"DWX_CACHE": str(tmp_path / "cache")}
    from tests.conftest import dwx_env

    env = dwx_env(**env_cache)
    run_dir = tmp_path / "run"
    out = run_dwx(
        "run",
        "task=depth_from_video",
        "experiment=depth_tiny",
        "loop.steps=10",
        "loop.eval_every=5",
        f"hydra.run.dir={run_dir}",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    m = read_metrics(run_dir)
    assert m["status"] == "completed" and m["main_metric"] == "abs_rel" and m["mode"] == "min"
    assert {"abs_rel", "baseline_abs_rel", "a1", "ate"} <= set(m["metrics"])
    assert (run_dir / "artifacts" / "weights.pt").is_file()

    export = tmp_path / "export"
    out = run_dwx("data", "export", str(export), "task=depth_from_video", "experiment=depth_tiny", env=env)
    assert out.returncode == 0, out.stderr
    frames = export / "test" / "street_test_00" / "frames"
    assert len(list(frames.glob("*.png"))) == 12
    assert json.loads((export / "test" / "street_test_00" / "intrinsics.json").read_text())["width"] == 96

    out = run_dwx("predict", str(run_dir), str(frames), "--out", str(tmp_path / "pred"), env=env)
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "pred").glob("*.npy"))) == 12

    out = run_dwx("predict", str(run_dir), str(tmp_path / "missing"), env=env)
    assert out.returncode == 2 and out.stderr.startswith("dwx: error: data.path: not found")


def test_each_rank_trains_on_its_share_of_the_global_batch():
    """Data-parallel: the ranks' snippets, flips, intrinsics and colour jitter are slices of one process's
    batch (simulated ranks; the loss and BatchNorm need the process group: tests/sweeps/test_distributed.py)."""
    task = tiny_task()
    task.setup(torch.device("cpu"))
    step = next(s for s in range(20) if 0 < int(task.batch(s).flip.sum()) < task.batch_size)  # some flipped
    target, sources, K, flip, g = task.batch(step)
    whole = [*task.sampler.jitter([target, *sources], g, task), K, flip]
    shares = []
    for rank in range(2):
        task.rank, task.world_size = rank, 2
        target, sources, K, flip, g = task.batch(step)
        assert len(target) == task.batch_size // 2
        shares.append([*task.sampler.jitter([target, *sources], g, task), K, flip])
    for i, tensor in enumerate(whole):
        torch.testing.assert_close(torch.cat([share[i] for share in shares]), tensor, rtol=1e-6, atol=1e-6)
    task.world_size = 3
    with pytest.raises(ConfigError, match="global batch of 4 does not split evenly over 3 processes"):
        task.batch(step)

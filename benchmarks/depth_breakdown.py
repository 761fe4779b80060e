"""Where a finished depth_from_video run's abs_rel comes from: error by ground-truth depth, test vs train.

    python benchmarks/depth_breakdown.py RUN_DIR [--edges 0 3 5 10 20 40 80] [--threads 1] [--loss]

Rebuilds the run's task from RUN_DIR/.hydra/config.yaml, loads RUN_DIR/artifacts/weights.pt (the weights
the run evaluated last: the weight average where loop.ema_decay is set) and scores the test and the
training sequences with the run's own protocol (caps, scaling). Per depth band it prints the share of
the pixels, their abs_rel and their share of the summed error; a large test/train gap means the network
fits its training streets better than it generalises (more or more varied training data helps), a band
that is bad on both splits is one the photometric loss does not teach.

With --loss it also asks, per band, whether the training loss prefers the truth: on every fourth training
frame it warps the sources with the run's own PoseNet and compares the band's mean minimum reprojection error
at the prediction with the error when the band's depths are replaced by the truth, scaled to the network's
units (the prediction's median over the ground truth's). Truth lower than prediction: the loss would reward
the truth but the training did not get there (an optimisation problem, not a loss that points elsewhere).

Measured 2026-12-02 (1 thread each, two runs at a time), `dwx run task=depth_from_video threads=1 seed=N
task.depth_net.init_disparity=0.05 task.translation_scale=100` (then with 6 training streets):
  seed 0: test abs_rel 0.161 (a1 0.777), train 0.099 (a1 0.917). GT 0-3 m: 1.9 % of the test pixels, abs_rel
  1.06, 12.7 % of the error; 3-5 m: 4.5 %, 0.45, 12.7 %; 5-10 m: 33.6 %, 0.103 (train 0.042); 10-20 m:
  34.4 %, 0.092 (train 0.049); 20-40 m: 17.8 %, 0.190; 40-80 m: 7.8 %, 0.254.
  seed 3: test abs_rel 0.228 with a1 0.827: GT 0-3 m holds 3.9 % of the pixels at abs_rel 2.55 (predicted
  ~3.5x too far), 43 % of the error; without them abs_rel would be ~0.13. Train 0.127.
Measured 2026-12-02 (evening), the default with 24 streets, seed 0 (`dwx run task=depth_from_video threads=1`):
  test abs_rel 0.137 (a1 0.832), train 0.121 (a1 0.875). GT 0-3 m: 1.9 % of the test pixels, abs_rel 0.98
  (train 1.10), 13.8 % of the error; 3-5 m: 4.5 %, 0.41 (train 0.27), 13.7 %; 5-10 m: 33.6 %, 0.081 (train
  0.058); 10-20 m: 34.4 %, 0.071 (train 0.062); 20-40 m: 17.8 %, 0.148; 40-80 m: 7.8 %, 0.268.
  With --loss (same run): at the prediction / at the truth, 0-3 m 0.0335 / 0.0170, 3-5 m 0.0352 / 0.0206,
  5-10 m 0.0405 / 0.0385, 10-20 m 0.0569 / 0.0556, 20-40 m 0.0903 / 0.0898, 40-80 m 0.0553 / 0.0551: the
  near pixels' truth would halve their loss even with the learned poses (the training does not reach it);
  beyond 20 m 1 m of motion barely tells the depths apart.
  Starting 3x nearer (`task.translation_scale=300`, seed 0): test 0.142, 0-3 m 0.95, 3-5 m 0.40 (train 1.12
  / 0.28): a near start does not teach the near pixels either.
Measured 2026-12-03, the default with task.scales=[0,3]: seed 3 test 0.166 (a1 0.852), train 0.109. GT 0-3 m:
  3.9 % of the test pixels at abs_rel 1.79 (train 1.25), 41.5 % of the error; 3-5 m 5.0 %, 0.36; 5-10 m 0.060;
  10-20 m 0.066; 20-40 m 0.139; 40-80 m 0.174. Seed 4 test 0.126, train 0.110: 0-3 m 1.1 %, 1.13, 10 % of the
  error; 3-5 m 4.0 %, 0.24; 20-40 m 0.168 and 40-80 m 0.200 hold 36 % of it. The near pixels stay the main error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.errors import InputError  # noqa: E402
from runner.geometry.warping import warp_frame  # noqa: E402
from runner.losses.photometric import min_reprojection, photometric_error  # noqa: E402
from tasks.depth_from_video.metrics import abs_rel_by_depth, compute_depth_metrics  # noqa: E402
from tasks.depth_from_video.predict import read_run  # noqa: E402


def load_run(run_dir: Path):
    """The run's task, set up on the CPU, with its saved DepthNet weights."""
    cfg, state = read_run(run_dir)
    task = instantiate(cfg.task)
    task.setup(torch.device("cpu"))
    task.depth_net.load_state_dict(state["depth_net"])
    task.pose_net.load_state_dict(state["pose_net"])
    return task


def reprojection_error(task, seq, t: int, depth, poses):
    """(1, 1, H, W) minimum over the task's sources of frame t's photometric error at ``depth`` (1, 1, H, W)."""
    target = seq.frames[t : t + 1]
    return min_reprojection(
        [
            photometric_error(
                warp_frame(seq.frames[t + o : t + o + 1], depth, pose, seq.K[None], padding="border")[0],
                target,
                task.objective.ssim_alpha,
            )
            for o, pose in zip(task.window.sources, poses)
        ]
    )


def loss_at_truth(task, sequences: list, edges: tuple[float, ...], every: int = 4) -> list[tuple[float, float]]:
    """Per depth band: the mean minimum reprojection error of the band's pixels at the predicted depth and
    with the band set to the median-scaled ground truth, both warped with the run's PoseNet poses."""
    task.depth_net.eval()
    task.pose_net.eval()
    n = len(edges) - 1
    at_pred, at_truth, counts = torch.zeros(n), torch.zeros(n), torch.zeros(n)
    sources = task.window.sources
    first, last = -min(0, *sources), max(0, *sources)
    for seq in sequences:
        for t in range(first, len(seq) - last, every):
            target, gt = seq.frames[t : t + 1], seq.depth[t][None, None]  # (1, 3, H, W), (1, 1, H, W)
            pred = task.predict_depth(target)[:, None]
            valid = task.eval_protocol.caps.mask(gt)
            truth = gt * pred[valid].median() / gt[valid].median()  # in the network's units
            poses = task.relative_poses(target, [seq.frames[t + o : t + o + 1] for o in sources], sources)
            base = reprojection_error(task, seq, t, pred, poses)
            for b in range(n):
                band = valid & (gt >= edges[b]) & (gt < edges[b + 1])
                if band.any():
                    at_pred[b] += base[band].sum()
                    at_truth[b] += reprojection_error(task, seq, t, torch.where(band, truth, pred), poses)[band].sum()
                    counts[b] += band.sum()
    counts = counts.clamp(min=1)
    return list(zip((at_pred / counts).tolist(), (at_truth / counts).tolist()))


def report(name: str, frames: list, edges: tuple[float, ...]) -> None:
    per_image = [compute_depth_metrics(*f) for f in frames]
    mean = {k: sum(m[k] for m in per_image) / len(per_image) for k in ("abs_rel", "a1")}
    print(f"[{name}] {len(frames)} frames: abs_rel {mean['abs_rel']:.4f}, a1 {mean['a1']:.3f}")
    for band in abs_rel_by_depth(frames, edges):
        print(
            f"  gt {band['low']:>5g}-{band['high']:<5g}: {band['pixels']:6.1%} of the pixels, "
            f"abs_rel {band['abs_rel']:.3f}, {band['error_share']:6.1%} of the error"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--edges", type=float, nargs="+", default=[0, 3, 5, 10, 20, 40, 80])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--loss", action="store_true", help="compare the training loss at the prediction and the truth")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        task = load_run(args.run_dir)
    except InputError as e:
        sys.exit(str(e))
    with torch.no_grad():
        for name, sequences in (("test", task.splits.test), ("train", task.splits.train)):
            frames = list(task.eval_protocol.scored_frames(task.predictions(sequences)))
            if not frames:
                print(f"[{name}] no frame has ground-truth depth")
                continue
            report(name, frames, tuple(args.edges))
        if args.loss:
            edges = tuple(args.edges)
            print("[train] each band's minimum reprojection error with the run's poses: at the prediction / the truth")
            for low, high, (pred, truth) in zip(edges, edges[1:], loss_at_truth(task, task.splits.train, edges)):
                print(f"  gt {low:>5g}-{high:<5g}: {pred:.4f} / {truth:.4f}")


if __name__ == "__main__":
    main()

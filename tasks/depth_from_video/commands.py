"""The subcommands depth_from_video adds to ``dwx`` (registered under the ``dwx.commands`` entry-point group in
pyproject.toml, so the CLI itself imports no task). ``dwx predict`` is dwx's own command, which serves this task
through the ``dwx.predictors`` entry point :func:`tasks.depth_from_video.predict.predict_run`.

A command is a function ``add(subparsers) -> run``: it adds its parser to ``dwx``'s subparsers and returns the
function that runs it on the parsed arguments and returns the exit code. This module imports nothing heavy, so
``dwx --help`` stays fast; the work is imported when the command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def export(subparsers) -> Callable[[argparse.Namespace], int]:
    """``dwx export RUN_DIR --format onnx [--out FILE] [--check FRAMES]``: a trained depth network as a file."""
    parser = subparsers.add_parser("export", help="write a trained depth_from_video model as ONNX (checked with "
                                                  "ONNX Runtime)")
    parser.add_argument("run_dir", type=Path, help="the run folder of a finished training run")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="file format (onnx)")
    parser.add_argument("--out", type=Path, help="the file to write (default: RUN_DIR/artifacts/depth.onnx)")
    parser.add_argument("--check", type=Path, help="frames or a video to compare ONNX Runtime with torch on "
                                                   "(default: a fixed random batch)")

    def run(args: argparse.Namespace) -> int:
        from tasks.depth_from_video.export import TOLERANCE, export_onnx

        out = args.out or args.run_dir / "artifacts" / "depth.onnx"
        difference = export_onnx(args.run_dir, out, args.check)
        print(f"wrote {out}: input image (B, 3, H, W) in [0, 1], output depth (B, 1, H, W); ONNX Runtime agrees "
              f"with torch to {difference:.1e} (<= {TOLERANCE:g})")
        return 0

    return run


"""``dwx predict RUN_DIR INPUT... [--out DIR]``: a trained run's model on new inputs, whatever the run's task.

The command reads the run folder's ``.hydra/config.yaml`` as data (no interpolation resolved, nothing
instantiated), takes ``task._target_`` and looks it up, by the exact string, among the names of the
``dwx.predictors`` entry points (pyproject.toml). The names are the allow-list: a ``_target_`` that is not one
of them is never imported, and a run of a task without a predictor is one line naming the tasks that have one.
A predictor is ``fn(run_dir: Path, inputs: list[Path], out_dir: Path) -> str``: it checks every value it reads
from the folder, writes its outputs to ``out_dir`` and returns the one-line summary the command prints.

This module also holds the helpers predictors share for reading a run folder's config as plain, checked values
(:func:`read_run_config`, :func:`plain`, :func:`matches`). It imports nothing heavy at module level, so that
``dwx --help`` stays fast and imports neither torch nor any task.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable
from pathlib import Path

if typing.TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from omegaconf import DictConfig

PREDICTORS = "dwx.predictors"  # the entry-point group: task _target_ -> "module:function"
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def add_parser(subparsers) -> Callable[[argparse.Namespace], int]:
    """Add ``dwx predict`` to ``dwx``'s subparsers; returns the function that runs it (-> exit code)."""
    parser = subparsers.add_parser(
        "predict",
        help="run a trained model on new inputs (depth_from_video, single_view_recon mode=learn)",
        description="Run the model a finished run trained on new inputs; which inputs depends on the run's task.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run folder of a finished training run")
    parser.add_argument(
        "inputs",
        type=Path,
        nargs="+",
        metavar="INPUT",
        help="depth_from_video: one folder of frames or a video; single_view_recon mode=learn: RGBA images "
        "(alpha = the object's silhouette), one mesh each",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("predictions"), metavar="DIR", help="output folder (default: predictions)"
    )

    def run(args: argparse.Namespace) -> int:
        print(predict(args.run_dir, list(args.inputs), args.out))
        return 0

    return run


def predictors() -> dict[str, EntryPoint]:
    """``{task _target_: entry point}`` of the ``dwx.predictors`` group (loading one imports its task)."""
    from importlib.metadata import entry_points

    return {entry.name: entry for entry in entry_points(group=PREDICTORS)}


def predict(run_dir: Path, inputs: list[Path], out_dir: Path) -> str:
    """Run the predictor of ``run_dir``'s task on ``inputs``, writing to ``out_dir``; returns its summary line.

    Raises :class:`~runner.errors.InputError` for a folder that is not a dwx run or whose task has no predictor.
    """
    from runner.errors import InputError

    target = plain(read_run_config(run_dir), "task", "_target_")
    available = predictors()
    if not isinstance(target, str) or target not in available:
        what = f"a run of {task_name(target)}" if isinstance(target, str) else "a run without a task._target_"
        served = " and ".join(task_name(t) for t in sorted(available)) or "none (no dwx.predictors are installed)"
        raise InputError(f"{run_dir} is {what}, which has no predictor; dwx predict serves runs of {served}")
    return available[target].load()(run_dir, inputs, out_dir)


def task_name(target: str) -> str:
    """How a user selects the task class ``target``: ``task=NAME`` or ``task=NAME mode=MODE`` (found in configs/
    task/ and configs/task_mode/), followed by the class in parentheses; the bare string if no config names it."""
    from runner.listing import option_targets

    tasks = sorted((CONFIG_DIR / "task").glob("*.yaml"))
    names = {t: f"task={option}" for option, t in option_targets(CONFIG_DIR, "task", "task").items()}
    for option, t in option_targets(CONFIG_DIR, "task_mode", "task").items():  # <task>_<mode>.yaml
        task = max((p.stem for p in tasks if option.startswith(f"{p.stem}_")), key=len, default=None)
        if task is not None:
            names.setdefault(t, f"task={task} mode={option[len(task) + 1 :]}")
    return f"{names[target]} ({target})" if target in names else show(target)


# ---------------------------------------------------------------------------------- reading a run folder as data


def read_run_config(run_dir: Path) -> DictConfig:
    """The composed config of a run folder, ``RUN_DIR/.hydra/config.yaml``, unresolved; InputError if it is missing,
    unreadable or not a mapping."""
    from runner.errors import InputError

    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.is_file():
        raise InputError(f"{run_dir} is not a dwx run folder (no .hydra/config.yaml)")
    return load_config(path)


def load_config(path: Path) -> DictConfig:
    """``path`` as a config mapping, nothing resolved; a file YAML cannot read, or that is not a mapping, is an
    InputError."""
    from omegaconf import DictConfig, OmegaConf

    from runner.errors import InputError, first_line

    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # YAML syntax, duplicate keys, bad encoding: say which, not a parser traceback
        raise InputError(f"{path}: not a readable config: {first_line(e)}") from e
    if not isinstance(cfg, DictConfig):
        raise InputError(f"{path}: expected a mapping of config keys, got a {type(cfg).__name__}")
    return cfg


def plain(cfg: DictConfig, *keys: str) -> object:
    """The value at ``cfg[keys[0]][keys[1]]...`` as plain Python (interpolations kept as text); None if absent."""
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(cfg, resolve=False)
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def matches(value: object, annotation: object) -> bool:
    """Whether a plain config value fits a constructor annotation: bool, int, float (ints too), str, None,
    a Literal, a union of these, or a homogeneous list / ``tuple[X, ...]`` (given as a list) of them."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in (bool, str, type(None)):
        return type(value) is annotation
    if annotation in (int, float):
        return type(value) is int or (annotation is float and type(value) is float)
    if origin is typing.Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if origin is list or (origin is tuple and args[1:] == (Ellipsis,)):
        return isinstance(value, list) and all(matches(v, args[0]) for v in value)
    return False  # any other annotation: no value from a run folder is accepted for it


def describe(annotation: object) -> str:
    """An annotation in words, for error messages (``tuple[int, ...]`` -> "a list of int")."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin in (list, tuple):
        return f"a list of {describe(args[0])}"
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def show(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

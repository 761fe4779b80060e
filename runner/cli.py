"""The ``dwx`` command.

``dwx run ...`` hands its arguments to Hydra (full override grammar, ``-m`` for multiruns, launcher
and sweeper plugins). Before that it composes the config once to turn Hydra's multi-line composition
errors into one line with the fix and exit code 2. Imports of torch and Hydra are deferred so that
``dwx --help`` and ``dwx list`` stay fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
CONFIG_NAME = "config"

# Hydra's own flags: (flag names, takes a value)
_HYDRA_FLAGS = {
    "-m": False,
    "--multirun": False,
    "-cd": True,
    "--config-dir": True,
    "-cn": True,
    "--config-name": True,
    "-cp": True,
    "--config-path": True,
    "-c": True,
    "--cfg": True,
    "-p": True,
    "--package": True,
    "--resolve": False,
    "-i": True,
    "--info": True,
    "-h": False,
    "--help": False,
    "--hydra-help": False,
    "-r": False,
    "--run": False,
    "--version": False,
    "-sc": True,
    "--shell-completion": True,
    "--experimental-rerun": True,
}
_NO_VALIDATION = {
    "-h",
    "--help",
    "--hydra-help",
    "-i",
    "--info",
    "-c",
    "--cfg",
    "--version",
    "-sc",
    "--shell-completion",
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="dwx",
        description="Run, sweep and report inverse-graphics experiments (PyTorch + Hydra).",
        epilog="Start with: dwx list, then dwx run task=<name>. Each command has --help.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks (same as HYDRA_FULL_ERROR=1)")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser(
        "run", help="run one experiment, or a sweep with -m (Hydra overrides; see dwx run --help)", add_help=False
    )
    p_list = sub.add_parser("list", help="list tasks, backends, optimisers and experiments")
    p_list.add_argument("group", nargs="?", help="only this config group (task, renderer, physics, ...)")
    p_data = sub.add_parser("data", help="data commands: dwx data export DIR task=<name> [overrides]")
    p_data.add_argument("action", choices=("export",))
    p_data.add_argument("out", help="folder to write the data set to")
    p_data.add_argument("overrides", nargs="*", help="config overrides, e.g. task=depth_from_video data.seed=1")
    p_report = sub.add_parser("report", help="table of final metrics of a run, a sweep or all of outputs/")
    p_report.add_argument("path", nargs="?", default="outputs", help="run folder, sweep folder or outputs/")
    p_report.add_argument("--format", choices=("markdown", "csv", "json"), default="markdown")
    from runner.predict import add_parser as add_predict  # light: the predictor is imported when it runs

    task_commands = {"predict": add_predict(sub), **_task_commands(sub)}

    # `dwx run` passes everything after it to Hydra untouched, so split argv by hand.
    if "run" in argv:
        i = argv.index("run")
        head, rest = argv[:i], argv[i + 1 :]
        if all(a in ("--debug",) for a in head):
            if "--debug" in head:
                os.environ["HYDRA_FULL_ERROR"] = "1"
            sys.exit(run(rest))
    args = parser.parse_args(argv)
    if args.debug:
        os.environ["HYDRA_FULL_ERROR"] = "1"
    if args.version:
        from runner import __version__

        print(f"dwx {__version__}")
        return
    if args.command == "list":
        from runner.listing import list_configs

        sys.exit(list_configs(CONFIG_DIR, args.group))
    if args.command == "data":
        sys.exit(_guarded(lambda: _export_data(Path(args.out), args.overrides)))
    if args.command in task_commands:
        sys.exit(_guarded(lambda: task_commands[args.command](args)))
    if args.command == "report":
        from runner.report import report_main

        sys.exit(report_main(Path(args.path), args.format))
    parser.print_help()


def _guarded(command) -> int:
    """Run a subcommand; a UserError prints one line and exits 2."""
    from runner.errors import UserError

    try:
        return command()
    except UserError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"dwx: error: {e}", file=sys.stderr)
        return 2


def _export_data(out: Path, overrides: list[str]) -> int:
    """``dwx data export DIR task=<name> ...``: write the task's data source to DIR in open formats."""
    from hydra.utils import instantiate
    from omegaconf import DictConfig

    from runner.errors import ConfigError, InputError

    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise InputError(f"dwx data export: {out} already exists{'' if out.is_file() else ' and is not empty'}; "
                         "choose a new folder (nothing was written)")
    cfg = _validate(overrides)
    data = cfg.get("data")
    source = instantiate(data) if isinstance(data, DictConfig) and "_target_" in data else None
    if not callable(getattr(source, "export", None)):
        from hydra.utils import get_class

        from runner.listing import option_targets

        task = str(cfg.task.get("_target_"))
        sources = ", ".join(
            name for name, target in option_targets(CONFIG_DIR, "data").items() if hasattr(get_class(target), "export")
        )
        raise ConfigError(
            f"task={task.split('.')[1] if task.startswith('tasks.') else task} has no data set to export: "
            f"dwx data export writes the videos of the data sources that have one (data={sources})"
        )
    print(source.export(out))
    return 0


def _task_commands(subparsers) -> dict:
    """``{name: run}`` of the subcommands tasks register under the ``dwx.commands`` entry-point group (e.g.
    depth_from_video's ``export``, in pyproject.toml): each entry adds its parser and returns its runner. An entry
    named like a command dwx has itself (``predict`` of an install older than ``dwx.predictors``) is skipped."""
    from importlib.metadata import entry_points

    return {
        entry.name: entry.load()(subparsers)
        for entry in entry_points(group="dwx.commands")
        if entry.name not in subparsers.choices
    }


def run(args: list[str]) -> int:
    """``dwx run``: validate the overrides, then let Hydra run the job(s)."""
    from runner.errors import InputError, UserError

    try:
        if any(a.split("=")[0] == "--experimental-rerun" for a in args):
            raise InputError(
                "--experimental-rerun is refused: Hydra unpickles the given file, which runs any code a shared "
                "run folder holds; continue a run with resume=RUN_DIR"
            )
        args = _with_resume(args)
        if not any(a.split("=")[0] in _NO_VALIDATION for a in args):
            _validate(args)
    except UserError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"dwx: error: {e}", file=sys.stderr)
        return 2

    import hydra

    from runner.run_folder import register_resolvers

    register_resolvers()
    _register_sweeper()
    sys.argv = ["dwx run", *args]
    hydra.main(config_path=str(CONFIG_DIR), config_name=CONFIG_NAME, version_base="1.3")(_job)()
    return 0


def _job(cfg) -> float:
    """Hydra's task function: :func:`runner.app.run_job`, imported only when a job runs (it pulls in torch,
    which ``dwx run --help`` and ``--cfg`` do not need)."""
    from runner.app import run_job

    return run_job(cfg)


def _register_sweeper() -> None:
    """Make dwx's Optuna sweeper (``hparams_search=<task>``) and joblib launcher (``hydra/launcher=joblib``,
    in which a dead worker fails its job alone) known to Hydra.

    Hydra finds plugins by scanning the ``hydra_plugins`` package on disk, which an editable install
    hides; registering the class directly works for every kind of install.
    """
    try:
        from hydra_plugins.dwx_sweeper.joblib_launcher import register as register_joblib_launcher
        from hydra_plugins.dwx_sweeper.resumable_optuna_sweeper import ResumableOptunaSweeper
    except ImportError:  # the `launchers` extra is not installed: no hparams_search, no joblib launcher
        return
    from hydra.core.plugins import Plugins

    Plugins.instance().register(ResumableOptunaSweeper)
    register_joblib_launcher()


def _split(args: list[str]) -> tuple[dict[str, str | bool], list[str], list[str]]:
    """Separate Hydra's flags from the overrides: (flags by name, flag tokens as given, overrides)."""
    flags: dict[str, str | bool] = {}
    tokens, overrides = [], []
    it = iter(args)
    for a in it:
        name, eq, value = a.partition("=")
        if a in _HYDRA_FLAGS or (eq and name in _HYDRA_FLAGS and name.startswith("--")):
            tokens.append(a)
            if _HYDRA_FLAGS[name] and not eq:
                value = next(it, "")
                tokens.append(value)
            flags[name] = value if _HYDRA_FLAGS[name] else True
        else:
            overrides.append(a)
    return flags, tokens, overrides


def _with_resume(args: list[str]) -> list[str]:
    """``resume=DIR`` re-runs DIR's own overrides into DIR itself, so the run continues where it stopped."""
    from runner.errors import InputError

    resume = [a for a in args if a.startswith("resume=")]
    if not resume or resume[-1] == "resume=null":
        return args
    flags, flag_tokens, overrides = _split(args)
    if "-m" in flags or "--multirun" in flags:
        raise InputError(
            "resume= continues one run; to continue a sweep, run the same command again "
            "(completed jobs are skipped by the sweep's own resume)"
        )
    run_dir = Path(resume[-1].partition("=")[2]).expanduser().resolve()
    saved = run_dir / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        raise InputError(f"resume={run_dir}: not a dwx run folder (no .hydra/overrides.yaml)")
    if not (run_dir / "checkpoints" / "last.pt").is_file():
        raise InputError(f"resume={run_dir}: the run left no checkpoints/last.pt to continue from")
    original = _saved_overrides(saved)
    rest = [a for a in overrides if not a.startswith("resume=")]
    return [*flag_tokens, *original, *rest, f"resume={run_dir}", f"hydra.run.dir={run_dir}"]


def _saved_overrides(saved: Path) -> list[str]:
    """The overrides a run folder recorded (except its own ``resume=``), each checked by :func:`_unsafe_override`.

    A run folder is data, never code: it may be someone else's. Its overrides.yaml is read as plain YAML
    (no interpolation is resolved) and must be a list of strings; an override that could run code or
    change Hydra itself is refused with an InputError, before anything is composed or run.
    """
    import yaml

    from runner.errors import InputError, first_line

    try:
        original = yaml.safe_load(saved.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise InputError(f"resume: cannot read {saved}: {first_line(e)}") from e
    if not isinstance(original, list) or not all(isinstance(o, str) for o in original):
        raise InputError(f"resume: {saved} is not a list of override strings")
    original = [o for o in original if not o.startswith("resume=")]
    for o in original:
        problem = _unsafe_override(o)
        if problem:
            raise InputError(
                f"resume: {saved} holds the override {o[:120]!r}, which {problem}; a run folder may only set "
                "config values: remove that line to resume"
            )
    return original


def _unsafe_override(override: str) -> str | None:
    """Why a saved override must not be re-applied on resume, or None when it only sets a config value.

    Refused: Hydra's own config (``hydra.*``, ``hydra/launcher=...``: launcher, search path, job
    environment), a ``_target_`` anywhere (a class or function to call), an interpolation ``${...}`` (a
    resolver could run code; no override dwx records holds one), a key that is not a dotted name (Hydra
    flags such as ``--config-dir``, group paths, ``@package``) and a group option given as a path
    (``task=../../x`` loads any YAML file).
    """
    import re

    key, _, value = override.strip().lstrip("+~").partition("=")
    key = key.strip()
    if re.split(r"[./@]", key)[0] == "hydra":
        return "changes Hydra's own config"
    if "_target_" in override:
        return "names a class or function to instantiate (_target_)"
    if "${" in override:
        return "holds an interpolation (${...}), whose resolver could run code"
    if not re.fullmatch(r"[A-Za-z_][\w-]*(\.[\w-]+)*", key) or ("." not in key and "/" in value):
        return "is not a plain key=value (a Hydra flag, a group path or @package, or a config file given by path)"
    return None


def _first_of_sweeps(overrides: list[str]) -> list[str]:
    """Each sweep override (``a=1,2``, ``range(...)``) replaced by its first value, for validation."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import HydraException

    from runner.errors import ConfigError

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise ConfigError(str(e).strip().splitlines()[0]) from e
    prefix = {OverrideType.ADD: "+", OverrideType.FORCE_ADD: "++", OverrideType.DEL: "~"}
    out = []
    for o in parsed:
        if not o.is_sweep_override():
            out.append(o.input_line)
            continue
        try:
            first = next(iter(o.sweep_string_iterator()))
        except Exception:  # interval(...) and other sweeps a sweeper samples from: not enumerable
            continue
        out.append(f"{prefix.get(o.type, '')}{o.get_key_element()}={first}")
    return out


def _validate(args: list[str]):
    """Compose the config as Hydra will and check the runner's keys; raise a one-line UserError."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from runner.validation import chosen_groups, validate

    flags, _, overrides = _split(args)
    overrides = _first_of_sweeps(overrides)
    config_dir = flags.get("-cd") or flags.get("--config-dir")
    if config_dir:
        overrides.append(f"hydra.searchpath=[file://{Path(str(config_dir)).resolve()}]")
    config_name = str(flags.get("-cn") or flags.get("--config-name") or CONFIG_NAME)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        try:
            cfg = compose(config_name=config_name, overrides=overrides)
        except HydraException as e:
            raise _explain(e, overrides, config_name) from e
    validate(cfg, chosen_groups(overrides))
    return cfg


def _explain(e: Exception, overrides: list[str], config_name: str) -> Exception:
    """Hydra's composition error as one line that names the key and the fix."""
    import difflib
    import re

    from runner.errors import ConfigError

    text = str(e)
    m = re.search(r"Could not find '([\w/]+)/([^']+)'", text)
    if m:
        group, option = m.groups()
        if group == "hydra/launcher" and option in _LAUNCHER_EXTRAS and not _launchers_installed():
            return ConfigError(
                f"hydra/launcher={option} needs the launcher plugins: pip install -e '.[launchers]' "
                "(joblib, submitit, Optuna)"
            )
        options = re.findall(r"^\t(\S+)$", text, flags=re.M)
        close = difflib.get_close_matches(option, options, n=1)
        hint = f" (did you mean {group}={close[0]}?)" if close else ""
        return ConfigError(f"unknown {group} '{option}'{hint}; choose one of: {', '.join(options) or 'none'}")
    m = re.search(r"You must specify '(\w+)'", text)
    if m:
        group = m.group(1)
        options = re.findall(r"^\t(\S+)$", text, flags=re.M)
        return ConfigError(f"no {group} given: add {group}=<name>, one of: {', '.join(options)}")
    m = re.search(r"Could not override '([^']+)'", text) or re.search(
        r"Could not append to config\. An item "
        r"is already at '([^']+)'",
        text,
    )
    if m:
        key = m.group(1)
        if key == "mode":  # the mode group is in the defaults of the tasks that have modes only
            modes = sorted({f.stem.rsplit("_", 1)[0] for f in (CONFIG_DIR / "task_mode").glob("*.yaml")})
            return ConfigError(f"this task has no modes: mode=fit|learn works with task={' or task='.join(modes)}")
        if "already at" in text:
            return ConfigError(f"'{key}' already exists: drop the '+' (or use ++{key}=... to force)")
        return ConfigError(
            f"unknown key '{key}'{_did_you_mean(key, overrides, config_name)}; to add a new key use +{key}=<value>"
        )
    m = re.search(r"Could not delete from config\. '([^']+)' does not exist", text)
    if m:
        return ConfigError(f"cannot delete '{m.group(1)}': no such key")
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(e).__name__)
    return ConfigError(first)


# launchers that the `launchers` extra brings (Hydra's joblib and submitit plugins, and dwx's slurm preset)
_LAUNCHER_EXTRAS = ("joblib", "slurm", "submitit_local", "submitit_slurm")


def _launchers_installed() -> bool:
    from importlib.util import find_spec

    return find_spec("hydra_plugins.hydra_joblib_launcher") is not None


def _did_you_mean(key: str, overrides: list[str], config_name: str) -> str:
    """Suggest the nearest existing key, composing once more without the offending override."""
    import difflib

    from hydra import compose
    from omegaconf import DictConfig, OmegaConf

    rest = [o for o in overrides if o.lstrip("+~").partition("=")[0] != key]
    try:
        cfg = compose(config_name=config_name, overrides=rest)
    except Exception:
        return ""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig):
        return ""
    close = difflib.get_close_matches(leaf, [str(k) for k in node.keys()], n=1)
    return f" (did you mean {parent + '.' if parent else ''}{close[0]}?)" if close else ""


if __name__ == "__main__":
    main()

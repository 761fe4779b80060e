"""``dwx list``: every config group option with the one-line description from its YAML file."""

from __future__ import annotations

from pathlib import Path

GROUPS = (
    ("task", "tasks"),
    ("renderer", "renderers"),
    ("physics", "physics engines"),
    ("data", "data sources"),
    ("scene", "physical_params scenes"),
    ("mode", "modes of a task (fit: one input's own unknowns | learn: a network)"),
    ("optim", "optimisers"),
    ("scheduler", "LR schedulers"),
    ("experiment", "experiments"),
    ("hparams_search", "hyperparameter searches (with -m)"),
    ("logger", "loggers"),
    ("debug", "debug presets"),
)


def describe(path: Path) -> str:
    """The first comment line of a YAML file that is not a Hydra ``# @package`` directive: a whole
    one-line description (tests/runner/test_listing.py checks that none stops mid-sentence)."""
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("#") and not line.startswith("# @package"):
            return line.lstrip("# ").strip()
        if line and not line.startswith("#"):
            break
    return ""


def option_targets(config_dir: Path, group: str, node: str | None = None) -> dict[str, str]:
    """``{option: _target_}`` of the group's configs that name a ``_target_`` at the top level (e.g. every physics
    engine) or, with ``node``, in that node (``node="task"``: the task class a task or task-mode config selects)."""
    from omegaconf import OmegaConf

    targets = {}
    for path in sorted((config_dir / group).glob("*.yaml")):
        cfg = OmegaConf.load(path)
        target = (cfg.get(node) or {}).get("_target_") if node else cfg.get("_target_")
        if isinstance(target, str):
            targets[path.stem] = target
    return targets


# groups of backends: the attribute by which each declares what it serves (runner/render/base.py, physics/base.py)
# and the word that shows it
BACKEND_CAPABILITIES = {"renderer": ("draws", "draws"), "physics": ("capabilities", "simulates")}


def offers(group: str, backend) -> frozenset[str]:
    """What a renderer draws or a physics engine simulates, as the backend (class or instance) declares it."""
    return frozenset(getattr(backend, BACKEND_CAPABILITIES[group][0], ()))


def backend_status(group: str, target: str) -> str:
    """What a backend serves, e.g. ``[draws meshes]`` or ``[simulates springs]``, or how to install it when its
    package is missing."""
    import importlib

    module, _, name = target.rpartition(".")
    try:
        backend = getattr(importlib.import_module(module), name)
    except ImportError as e:
        return f"[not installed: {str(e).split(': ', 1)[-1]}]" if "pip install" in str(e) else "[not installed]"
    return f"[{BACKEND_CAPABILITIES[group][1]} {', '.join(sorted(offers(group, backend))) or 'nothing declared'}]"


def list_configs(config_dir: Path, only: str | None = None) -> int:
    groups = [g for g in GROUPS if only in (None, g[0])]
    if not groups:
        names = ", ".join(g for g, _ in GROUPS)
        print(f"dwx: error: unknown group '{only}'; choose one of: {names}")
        return 2
    for group, title in groups:
        described = {f: describe(f) for f in sorted((config_dir / group).glob("*.yaml"))}
        files = [f for f, text in described.items() if not text.startswith("(internal)")]
        print(f"{title} ({group}=<name>):")
        if not files:
            print("  (none yet)")
        width = max((len(f.stem) for f in files), default=0)
        targets = option_targets(config_dir, group) if group in BACKEND_CAPABILITIES else {}
        for f in files:
            status = f" {backend_status(group, targets[f.stem])}" if f.stem in targets else ""
            print(f"  {f.stem:<{width}}  {described[f]}{status}")
        print()
    return 0

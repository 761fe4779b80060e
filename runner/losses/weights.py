"""One way to give a task's loss weights: a ``task.losses`` mapping of term -> weight."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from runner.errors import ConfigError


def loss_weights(losses: Mapping[str, float], terms: Sequence[str]) -> dict[str, float]:
    """Check a ``task.losses`` mapping against the task's loss ``terms`` and return it as floats.

    Every key must name one of ``terms`` and every weight must be a number >= 0 (0 switches a term off); a term
    the mapping leaves out has weight 0.

    Raises:
        ConfigError: naming the unknown terms (and the allowed ones) or the weights that are not numbers >= 0.
    """
    if not isinstance(losses, Mapping):
        raise ConfigError(f"task.losses must be a mapping of term -> weight, got {losses!r}")
    unknown = sorted(set(losses) - set(terms))
    if unknown:
        raise ConfigError(f"task.losses: unknown term(s) {unknown}; the terms are {list(terms)}")
    bad = {k: v for k, v in losses.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0}
    if bad:
        raise ConfigError(f"task.losses: weights must be numbers >= 0, got {bad}")
    return {term: float(losses.get(term, 0.0)) for term in terms}

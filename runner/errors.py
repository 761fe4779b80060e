"""Errors a user can fix: a bad config value, a missing or unreadable input file.

They print as one line (``dwx: error: ...``) and exit with code 2, without a traceback
(``HYDRA_FULL_ERROR=1`` or ``dwx --debug`` shows it). Every other exception is a bug or a failed run.
"""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


class UserError(Exception):
    """A problem in what the user gave (config, overrides, input files); the message says how to fix it."""


class ConfigError(UserError):
    """A config key with a bad or inconsistent value."""


class InputError(UserError):
    """A missing, unreadable or inconsistent input file."""


class NonFiniteError(RuntimeError):
    """The loss or a gradient became NaN or Inf."""


class Interrupted(Exception):
    """The run was stopped by SIGINT or SIGTERM after a checkpoint was written."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


def find_cause(exc: BaseException, kind: type[E]) -> E | None:
    """The first exception of type ``kind`` in ``exc``'s cause/context chain (Hydra's instantiate wraps them)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def find_user_error(exc: BaseException) -> UserError | None:
    """The first UserError in an exception's cause/context chain."""
    return find_cause(exc, UserError)

"""Errors a user can fix: a bad config value, a missing or unreadable input file.

They print as one line (``dwx: error: ...``) and exit with code 2, without a traceback
(``HYDRA_FULL_ERROR=1`` or ``dwx --debug`` shows it). Every other exception is a bug or a failed run.
"""

from __future__ import annotations

from collections.abc import Iterator
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


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's message, or its type's name when it has none."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def exception_chain(exc: BaseException, as_shown: bool = False) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or during, innermost last.

    ``as_shown``: follow the chain as Python's traceback shows it (``raise ... from None`` ends it).
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        yield exc
        seen.add(id(exc))
        if as_shown and exc.__cause__ is None and exc.__suppress_context__:
            return
        exc = exc.__cause__ or exc.__context__


def find_cause(exc: BaseException, kind: type[E]) -> E | None:
    """The first exception of type ``kind`` in ``exc``'s cause/context chain (Hydra's instantiate wraps them)."""
    return next((e for e in exception_chain(exc) if isinstance(e, kind)), None)


def find_user_error(exc: BaseException) -> UserError | None:
    """The first UserError in an exception's cause/context chain."""
    return find_cause(exc, UserError)

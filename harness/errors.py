"""Errors that map to the CLI's exit statuses: 2 for bad input or config, 3 for runtime failure."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PPEvalError(Exception):
    """Base of the harness's own errors; `exit_code` is what the CLI exits with."""

    exit_code = 3


class InputError(PPEvalError):
    """Bad input: a config, model, adapter or data file that is not what was expected (exit 2)."""

    exit_code = 2


class MissingData(InputError):
    """A suite needs data the config does not give (skipped when the suite was not asked for by name)."""


class RunFailure(PPEvalError):
    """A failure while running that is not the input's fault (exit 3)."""

    exit_code = 3


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ' (did you mean "x"?)' hint for a misspelt key, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""

"""Errors that reach the user as one line (exit code 2 for input, 1 for a scheduler), raised from every layer.

This module imports nothing of dlbench, so any layer (results included) can raise them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable


class ConfigError(ValueError):
    """A problem with user input; its message is one line, shown without traceback."""

    def __init__(self, message: str) -> None:
        # user text (YAML keys, --set strings) can carry newlines and control characters:
        # escape them so the message really is one line
        super().__init__(re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], message))


class SchedulerError(RuntimeError):
    """A scheduler refused work or could not be reached (sbatch failing, a Ray job server gone): not the
    user's input but the cluster's state; one line, shown without traceback, exit code 1."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""

"""User-facing errors.

Anything a user can cause (a bad config key, a malformed data line, a missing
package) raises a :class:`SeqlabError` with a one-line message.  The CLI
prints it on stderr with its hint and exits non-zero, never with a traceback.
"""

from __future__ import annotations

__all__ = ["SeqlabError", "DataError", "ConfigError"]


class SeqlabError(Exception):
    """An error the user can fix; ``hint`` says how."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class DataError(SeqlabError):
    """A data source is missing or malformed (the message names file and line)."""


class ConfigError(SeqlabError):
    """A configuration key or value is invalid (the message lists the valid ones)."""

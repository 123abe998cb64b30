"""User-facing errors.

Every mistake a user can make (a bad path, a bad config key, bad data, a model that does not
fit the configured features) raises one of these. The command line turns them into one line on
stderr and a non-zero exit; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class KerastraderError(Exception):
    """Base class of every error that is the user's to fix."""


class ConfigError(KerastraderError):
    """A config file, key or value that cannot be used."""


class DataError(KerastraderError):
    """Bars that cannot be trusted. The message names the source, the row and the problem.

    ``row`` is the 1-based line number in the source file (the header is line 1), so a user can
    open the file at that line; for in-memory frames it is the 0-based position.
    """

    def __init__(self, source: str, problem: str, row: int | None = None) -> None:
        self.source = str(source)
        self.problem = problem
        self.row = row
        where = f"{self.source}, row {row}" if row is not None else self.source
        super().__init__(f"{where}: {problem}")


class ModelMismatchError(KerastraderError):
    """A saved model that does not fit the configured features, window or data."""

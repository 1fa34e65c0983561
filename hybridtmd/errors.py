"""Exceptions and warnings raised by hybridtmd.

Every error about a user's file names the file and the reason in its message, so a batch command
can report it on one line and carry on with the other files.
"""

from __future__ import annotations

from pathlib import Path


class HybridTMDError(Exception):
    """Base class of every hybridtmd error."""


class AFMInputError(HybridTMDError, ValueError):
    """An AFM file or array cannot be used: unreadable, wrong shape, too small, too many NaNs..."""

    def __init__(self, source: str | Path | None, reason: str):
        self.source = None if source is None else str(source)
        self.reason = reason
        where = self.source if self.source is not None else "<array>"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):  # picklable across joblib/dask workers despite the custom __init__
        return (type(self), (self.source, self.reason))


class MissingDependencyError(HybridTMDError, ImportError):
    """An optional dependency (an extra) is needed for this operation; ``source`` names the file
    that needs it, when one does (the message then starts with it, the ``reason`` does not)."""

    def __init__(self, reason: str, source: str | Path | None = None):
        self.source = None if source is None else str(source)
        self.reason = reason
        super().__init__(reason if self.source is None else f"{self.source}: {reason}")

    def __reduce__(self):  # picklable across workers, as AFMInputError
        return (type(self), (self.reason, self.source))


class AFMInputWarning(UserWarning):
    """Input was usable but altered: NaNs filled, RGB converted to grey, units assumed..."""


class ModelFileError(HybridTMDError, ValueError):
    """A saved model cannot be loaded (missing or modified file, incompatible version) or a model
    cannot be saved without pickle. The message names the file."""

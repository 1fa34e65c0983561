"""Warnings that point at the user's line, not at the package frame that raised them."""

from __future__ import annotations

import inspect
import warnings

#: Packages whose frames a warning skips to reach the user's line (scikit-learn's wrappers call
#: our transform/fit from inside their own code).
INTERNAL_PACKAGES = ("hybridtmd", "sklearn")


def warn_at_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside hybridtmd (and scikit-learn):
    the user's line, however many package frames lie between it and the code that warns."""
    frame = inspect.currentframe()
    frame = frame.f_back if frame is not None else None  # the function that warns: stacklevel 2
    level = 2
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] in INTERNAL_PACKAGES:
        frame = frame.f_back
        level += 1
    del frame  # frames hold references to their locals
    warnings.warn(message, category, stacklevel=level)

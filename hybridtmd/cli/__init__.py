"""Command line: ``hybridtmd --help``. Thin commands: each reads its inputs, calls library
functions and report writers, and reports bad files one line each (see :mod:`.common`)."""

from . import data, evaluating, modelling  # noqa: F401  (registering the commands)
from .common import app

__all__ = ["app"]

"""Limits on what reading one file may cost: pixels (decompression bombs) and time (third-party
parsers that loop on malformed files), and third-party log output.

``HYBRIDTMD_MAX_PIXELS`` (default :data:`DEFAULT_MAX_PIXELS` = 16384 x 16384, four times an
8192 x 8192 scan) bounds the pixels a file may declare; the declared size is checked before any
data is decoded. ``HYBRIDTMD_READ_TIMEOUT`` (seconds, default :data:`DEFAULT_READ_TIMEOUT_S`)
bounds one third-party read.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from ..errors import AFMInputError

T = TypeVar("T")

#: Default largest image accepted, in pixels (16384 x 16384; float64 heights of 2 GiB).
DEFAULT_MAX_PIXELS = 16384 * 16384
#: Default longest third-party read, in seconds (a real scan of 8192 x 8192 px reads in ~2 s).
DEFAULT_READ_TIMEOUT_S = 30.0
#: Loggers of the third-party readers, silenced unless :func:`set_third_party_logging` turns them on.
THIRD_PARTY_LOGGERS = ("SurfaceTopography", "NuMPI", "AFMReader", "igor2", "tifffile", "PIL")


def _positive_env(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise ValueError(f"{name}={text!r} must be a positive finite number")
    return value


def max_pixels() -> int:
    """Largest number of pixels one image may declare (``HYBRIDTMD_MAX_PIXELS``)."""
    return int(_positive_env("HYBRIDTMD_MAX_PIXELS", DEFAULT_MAX_PIXELS))


def read_timeout_s() -> float:
    """Longest a third-party read may take, in seconds (``HYBRIDTMD_READ_TIMEOUT``)."""
    return _positive_env("HYBRIDTMD_READ_TIMEOUT", DEFAULT_READ_TIMEOUT_S)


def check_declared_size(shape: Iterable[int], source: str | Path | None) -> None:
    """Refuse a file whose declared image size exceeds :func:`max_pixels`, before decoding it."""
    dims = [int(d) for d in shape]
    total = 1
    for d in dims:
        total *= max(d, 0)
    limit = max_pixels()
    if total > limit:
        shown = " x ".join(str(d) for d in dims)
        raise AFMInputError(source, f"declares {shown} = {total:,} pixels, over the limit of {limit:,} "
                                    "(set HYBRIDTMD_MAX_PIXELS to raise it)")


class _ReadTimeout(BaseException):
    """Not an Exception: a parser's own ``except Exception`` must not swallow the time limit."""


def _raise_timeout(signum, frame):  # signal handler signature
    raise _ReadTimeout


_BOUND = threading.local()  # .active: this thread already runs under a time limit


def bounded_call(function: Callable[[], T], source: str | Path, what: str) -> T:
    """``function()`` stopped after :func:`read_timeout_s` with one :class:`AFMInputError` naming
    ``source``.

    In the main thread an interval timer interrupts the call itself (a parser looping or waiting
    in Python stops there); in other threads (joblib, dask workers) the call runs in a daemon
    thread that is abandoned when the time is up, so the batch goes on. A call made inside
    another bounded call runs under the outer limit.
    """
    if getattr(_BOUND, "active", False):
        return function()
    limit = read_timeout_s()
    reason = f"{what} did not finish within {limit:g} s (a malformed file?; HYBRIDTMD_READ_TIMEOUT sets the limit)"
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        previous = signal.signal(signal.SIGALRM, _raise_timeout)
        signal.setitimer(signal.ITIMER_REAL, limit)
        _BOUND.active = True
        try:
            return function()
        except _ReadTimeout:
            raise AFMInputError(source, reason) from None
        finally:
            _BOUND.active = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    outcome: dict[str, object] = {}

    def run() -> None:
        _BOUND.active = True
        try:
            outcome["value"] = function()
        except BaseException as exc:  # handed to the calling thread below
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True, name=f"hybridtmd-read-{Path(source).name}")
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        raise AFMInputError(source, reason)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


_VERBOSE = {"on": False}


def set_third_party_logging(verbose: bool) -> None:
    """Show (``True``) or hide (``False``, the default) the log output of the third-party readers."""
    _VERBOSE["on"] = bool(verbose)
    quiet_third_party_logs()


def quiet_third_party_logs() -> None:
    """Apply the current setting to the standard-library loggers and to AFMReader's loguru logger."""
    # Off means off: tifffile logs recoverable parse problems at ERROR level, which the one-line
    # report of the file already covers.
    level = logging.NOTSET if _VERBOSE["on"] else logging.CRITICAL + 1
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    try:
        from loguru import logger
    except ImportError:
        return
    for name in ("AFMReader", "topostats"):
        (logger.enable if _VERBOSE["on"] else logger.disable)(name)


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_READ_TIMEOUT_S",
    "THIRD_PARTY_LOGGERS",
    "bounded_call",
    "check_declared_size",
    "max_pixels",
    "quiet_third_party_logs",
    "read_timeout_s",
    "set_third_party_logging",
]

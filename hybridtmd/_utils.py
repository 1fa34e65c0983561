"""Helpers every stage shares: atomic file writes, content hashing, one progress bar, device
selection, the parameter checks of the estimators, file names as text and guarded JSON parsing."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import inspect
import math
import numbers
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    Readers never see a half-written file: the data goes to a temporary file in the same
    directory (same filesystem) and ``os.replace`` swaps it in. On error the temporary is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=suffix or "".join(path.suffixes) + ".tmp"
    )
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_csv(frame: Any, path: str | Path, **to_csv: Any) -> None:
    """Write a pandas DataFrame to ``path`` as CSV atomically (``to_csv`` keywords passed on)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **to_csv)


def path_text(path: str | os.PathLike) -> str:
    """A file's path as text for tables, CSV, parquet and reports: ``os.fspath(path)``, where the
    bytes of a name that is not valid in the file-system encoding - which Python holds as lone
    surrogates \\udc80-\\udcff (PEP 383 "surrogateescape") - are written ``\\xNN`` (the byte), and any
    other lone surrogate ``\\uNNNN``. Arrow-backed pandas strings, parquet and UTF-8 files hold valid
    Unicode only: a surrogate reaching them is a UnicodeEncodeError."""
    text = os.fsdecode(path)
    if not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        return text
    return "".join(f"\\x{ord(ch) - 0xDC00:02x}" if 0xDC80 <= ord(ch) <= 0xDCFF
                   else f"\\u{ord(ch):04x}" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)


def text_path(text: str) -> str:
    """The inverse of :func:`path_text`: ``\\x80``-``\\xff`` back to the bytes they stand for
    and ``\\ud800``-``\\udfff`` to the lone surrogates, so a name read back from a table or manifest
    names the file again (``os.fsencode`` gives its bytes)."""
    import re

    return re.sub(r"\\x([89a-fA-F][0-9a-fA-F])|\\u([dD][89a-fA-F][0-9a-fA-F]{2})",
                  lambda m: chr(0xDC00 + int(m.group(1), 16)) if m.group(1) else chr(int(m.group(2), 16)), text)


def json_loads(text: str | bytes) -> Any:
    """``json.loads``, with JSON nested deeper than Python's recursion limit refused as a
    ``ValueError`` (like malformed JSON: ``json.JSONDecodeError`` is one) instead of a
    ``RecursionError``."""
    import json

    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to parse") from None


def array_digest(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes: a content key that ignores file names."""
    array = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(str(array.dtype).encode())
    h.update(str(array.shape).encode())
    h.update(array.tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------------


#: Who hears of each model fitted (or each long step done) in this context: a progress display.
#: Every stage reports through :func:`report_fits`; the CLI listens with :func:`counting_fits`.
FIT_LISTENER: contextvars.ContextVar[Callable[[int], None] | None] = contextvars.ContextVar("fit_listener",
                                                                                          default=None)


@contextlib.contextmanager
def counting_fits(listener: Callable[[int], None] | None) -> Iterator[None]:
    """Call ``listener(n)`` whenever ``n`` more fits (or steps) are done inside the block (every
    fold, arm, modality setting, permutation and held-out explanation: the CLI's progress bars);
    None silences it."""
    token = FIT_LISTENER.set(listener)
    try:
        yield
    finally:
        FIT_LISTENER.reset(token)


def report_fits(n: int = 1) -> None:
    """Tell the listener of :func:`counting_fits` that ``n`` more fits (or steps) are done."""
    listener = FIT_LISTENER.get()
    if listener is not None:
        listener(n)


class ProgressBar:
    """One rich progress bar on stderr for every long loop (loading, descriptors, embedding,
    training, stores, evaluation stages); a no-op when ``show`` is false, so callers never branch.

    On a terminal it is rich's live bar (done / total, ``info``, elapsed and remaining time). When
    stderr is not a terminal (a log file, a pipe, CI) a live bar would be garbage, so each stage is
    one line when it ends instead (``lines=True`` forces that, ``False`` forces the bar; a
    ``transient`` bar leaves no line).
    :meth:`stage` starts the next stage of a multi-stage command on the same display.

    >>> with ProgressBar(True, total=10, description="descriptors") as bar:  # doctest: +SKIP
    ...     bar.advance(1, info="loss 0.12")
    ...     bar.stage("permutations", total=95)
    """

    def __init__(self, show: bool, total: int | None, description: str, *, transient: bool = False,
                 lines: bool | None = None):
        self.show, self.total, self.description, self.transient = bool(show), total, description, transient
        self.lines = lines
        self._bar: Any = None
        self._task: Any = None
        self._console: Any = None
        self._done = 0
        self._started = 0.0

    def __enter__(self) -> ProgressBar:
        if self.show:
            from rich.console import Console

            self._console = Console(stderr=True)
            if self.lines is None:
                self.lines = not self._console.is_terminal
            if not self.lines:
                self._bar = self._rich_progress()
                self._bar.__enter__()
            self._start_task()
        return self

    def _rich_progress(self) -> Any:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=self._console, transient=self.transient)

    def _start_task(self) -> None:
        import time

        self._done, self._started = 0, time.perf_counter()
        if self._bar is not None:
            self._task = self._bar.add_task(self.description, total=self.total, info="")

    def _end_task(self) -> None:
        """The stage's line in ``lines`` mode: ``description: done/total in 12.3 s``."""
        import time

        if self.show and self.lines and not self.transient:
            total = "" if self.total is None else f"/{self.total}"
            self._console.print(f"{self.description}: {self._done}{total} in "
                                f"{time.perf_counter() - self._started:.1f} s", highlight=False, soft_wrap=True)

    def advance(self, n: int = 1, info: str | None = None) -> None:
        """Count ``n`` more items done; ``info`` replaces the text after the counter."""
        self._done += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n, **({} if info is None else {"info": info}))

    def stage(self, description: str, total: int | None) -> None:
        """End the current stage (its line, in ``lines`` mode) and start ``description`` with
        ``total`` items (None: unknown, counted without an estimate)."""
        if not self.show:
            return
        if self._done or self.total == 0:
            self._end_task()
        elif self._bar is not None:  # a stage that counted nothing (the opening title) leaves no trace
            self._bar.remove_task(self._task)
        self.description, self.total = description, total
        self._start_task()

    def __exit__(self, *exc: Any) -> None:
        if self.show and exc[0] is None:
            self._end_task()
        if self._bar is not None:
            self._bar.__exit__(*exc)


def track(items: Iterable[T], *, total: int | None, description: str, show: bool) -> Iterator[T]:
    """Yield ``items`` unchanged, advancing a :class:`ProgressBar` by one per item."""
    with ProgressBar(show, total, description) as bar:
        for item in items:
            yield item
            bar.advance()


# --------------------------------------------------------------------------------------------
# Devices
# --------------------------------------------------------------------------------------------

DEVICES = ("auto", "cpu", "cuda")


def select_device(device: str) -> str:
    """The torch device string for a ``device`` parameter: "auto" takes CUDA when present.

    Raises ValueError for an unknown name, or for "cuda" on a machine without CUDA.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(map(repr, DEVICES))}, not {device!r}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but CUDA is not available; use device='cpu' or 'auto'")
    return device


# --------------------------------------------------------------------------------------------
# Parameter validation (one mechanism for every estimator)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """Numbers of ``kind`` between ``low`` and ``high`` (None: unbounded); ``closed`` says which
    ends are included: "both", "left", "right" or "neither". Bools are never numbers here."""

    kind: type
    low: float | None
    high: float | None
    closed: str = "both"

    def __call__(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, self.kind | np.integer | np.floating):
            return False
        if self.kind is numbers.Integral and not isinstance(value, numbers.Integral | np.integer):
            return False
        if not math.isfinite(float(value)) and (self.low is not None or self.high is not None):
            return False
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is not None and (value < self.low or (not left and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (not right and value == self.high)))

    def __str__(self) -> str:
        name = "an int" if self.kind is numbers.Integral else "a number"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        brackets = {"both": "[]", "left": "[)", "right": "(]", "neither": "()"}[self.closed]
        return f"{name} in {brackets[0]}{lo}, {hi}{brackets[1]}"


@dataclass(frozen=True)
class Options:
    """One of the given values."""

    values: tuple[Any, ...]

    def __call__(self, value: Any) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)  # 1 is not True

    def __str__(self) -> str:
        return "one of " + ", ".join(map(repr, self.values))


@dataclass(frozen=True)
class Check:
    """Any predicate, with the words an error message uses for it."""

    predicate: Callable[[Any], bool]
    description: str

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self.predicate(value))
        except (TypeError, ValueError):
            return False

    def __str__(self) -> str:
        return self.description


#: Constraints several settings share: a number > 0, a number >= 0, an int >= 1, a fraction in (0, 1]
POSITIVE = Interval(numbers.Real, 0, None, closed="neither")
NON_NEGATIVE = Interval(numbers.Real, 0, None)
COUNT = Interval(numbers.Integral, 1, None)
FRACTION = Interval(numbers.Real, 0, 1, closed="right")


def _describe(constraint: Any) -> str:
    if constraint is None:
        return "None"
    if isinstance(constraint, type):
        return f"an instance of {constraint.__name__}"
    return str(constraint)


def _satisfies(value: Any, constraint: Any) -> bool:
    if constraint is None:
        return value is None
    if isinstance(constraint, type):
        return isinstance(value, constraint)
    return constraint(value)


def validate_params(owner: Any, constraints: Mapping[str, Sequence[Any]]) -> None:
    """Check an estimator's parameters against ``constraints`` (parameter name -> allowed
    constraints; a value is valid when it satisfies any one of them), the way scikit-learn's
    ``_parameter_constraints`` do: ``None``, a type, :class:`Interval`, :class:`Options` or
    :class:`Check`. Called at the start of ``fit`` (``__post_init__`` of a settings dataclass);
    ``__init__`` stays a plain store. :func:`check_params` checks values not yet given to one.

    Raises
    ------
    ValueError
        ``The 'C' parameter of KernelSVMHead must be a number in (0, inf]; got -1.``
    """
    check_params({param: getattr(owner, param) for param in constraints}, constraints, type(owner).__name__)


def check_params(values: Mapping[str, Any], constraints: Mapping[str, Sequence[Any]], owner: str) -> None:
    """:func:`validate_params` on the ``values`` of some parameters of ``owner`` (a class name)
    before any object is made (a config file's table): the keys of ``values`` that have
    constraints are checked, with the message the estimator itself would give."""
    for param, value in values.items():
        if param in constraints and (why := unmet(value, constraints[param])):
            raise ValueError(f"The {param!r} parameter of {owner} {why}.")


def unmet(value: Any, allowed: Sequence[Any]) -> str | None:
    """None when ``value`` satisfies one of the constraints ``allowed``, else what it fails:
    ``must be a number in (0, inf]; got -1`` (the words of every parameter check, also of the
    command-line options)."""
    if any(_satisfies(value, c) for c in allowed):
        return None
    return f"must be {' or '.join(_describe(c) for c in allowed)}; got {value!r}"


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Warnings
# --------------------------------------------------------------------------------------------

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

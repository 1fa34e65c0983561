"""Progress of long commands: who hears of each fit done (a context variable the CLI listens on)
and the one rich progress bar every long loop draws."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")



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

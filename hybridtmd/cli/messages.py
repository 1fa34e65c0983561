"""What the commands print: the consoles, one-line errors and warnings, the skipped-file list, and
library messages with a reading option's keyword turned into its command-line flag."""

from __future__ import annotations

import re
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from .._utils import path_text

console = Console()
err_console = Console(stderr=True)


#: Python keyword of a reading option -> its command-line flag (messages from the library name the
#: keyword; the same message on the command line names the flag).
KEYWORD_FLAGS = {"pixel_size_nm=...": "--pixel-size-nm NM", "pixel_size_nm": "--pixel-size-nm",
                 "z_scale (nm per grey level)": "--z-scale NM_PER_LEVEL", "z_scale=nm per count": "--z-scale NM",
                 "z_scale": "--z-scale", "channel=<page index": "--channel <page index", "z_unit": "--z-unit",
                 "DescriptorConfig(reference_pixel_nm=...)": "reference_pixel_nm = ... in the --config file's "
                                                              "[descriptors] table"}
_KEYWORDS = re.compile("|".join(re.escape(k) for k in sorted(KEYWORD_FLAGS, key=len, reverse=True)))


def as_flags(text: str) -> str:
    """A library message with each reading keyword replaced by its command-line flag."""
    return _KEYWORDS.sub(lambda m: KEYWORD_FLAGS[m.group(0)], text)


def safe_text(text: object) -> str:
    """``text`` fit for one terminal line: control characters (escape sequences, newlines) shown as
    ``\\x1b``, ``\\n``..., and a file name's bytes that are not valid text as ``\\xNN`` (as in the
    tables: :func:`hybridtmd._utils.path_text`), never sent raw."""
    out = []
    for ch in path_text(str(text)):
        code = ord(ch)
        out.append(ch.encode("unicode_escape").decode("ascii") if code < 32 or 127 <= code < 160 else ch)
    return "".join(out)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (2: usage, 1: nothing done)."""
    err_console.print(f"[bold red]error:[/] {escape(safe_text(as_flags(message)))}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def warn_line(message: str) -> None:
    """``warning: message`` on stderr, on one line."""
    err_console.print(f"[yellow]warning:[/] {escape(safe_text(as_flags(message)))}", soft_wrap=True, highlight=False)


def report_errors(errors: list[tuple[str, str]], what: str = "file") -> None:
    """One line per bad input on stderr, never truncated: ``skipped <file>: <reason>``."""
    if not errors:
        return
    err_console.print(f"[bold yellow]{len(errors)} {what}(s) skipped:[/]")
    for path, reason in errors:
        line = f"  skipped {safe_text(path)}: {safe_text(as_flags(str(reason)))}"
        err_console.print(escape(line), soft_wrap=True, highlight=False)


def exit_for(errors: list) -> None:
    """Exit 1 when some files failed (they were reported); the good ones were processed."""
    if errors:
        raise typer.Exit(1)

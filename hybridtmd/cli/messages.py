"""What the commands print: the consoles, one-line errors and warnings, the skipped-file list, and
library messages with a reading option's keyword turned into its command-line flag."""

from __future__ import annotations

import re
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from .._utils.files import path_text

console = Console()
err_console = Console(stderr=True)


#: Python keyword of a reading option -> its command-line flag. The library's instructions name
#: the keyword ("pass pixel_size_nm=..."); on the command line they name the flag. A message about
#: a file's own metadata or a manifest's value ("npz pixel_size_nm must be numbers") keeps the name.
KEYWORD_FLAGS = {"pixel_size_nm=...": "--pixel-size-nm NM", "pixel_size_nm": "--pixel-size-nm",
                 "z_scale (nm per grey level)": "--z-scale NM_PER_LEVEL", "z_scale=nm per count": "--z-scale NM",
                 "z_scale": "--z-scale", "channel=<page index": "--channel <page index", "z_unit": "--z-unit"}
#: library advice that names a setting of the config file
SETTING_FLAGS = {"DescriptorConfig(reference_pixel_nm=...)": "reference_pixel_nm = ... in the --config file's "
                                                             "[descriptors] table"}
_KEYWORD = "|".join(re.escape(k) for k in sorted(KEYWORD_FLAGS, key=len, reverse=True))
#: an instruction: "pass" then one keyword or several joined by "and"
_INSTRUCTION = re.compile(rf"\bpass (?:{_KEYWORD})(?: and (?:{_KEYWORD}))*")
_SETTINGS = re.compile("|".join(re.escape(k) for k in SETTING_FLAGS))


def as_flags(text: str) -> str:
    """A library message whose instructions to pass a reading keyword name its command-line flag
    instead (and config settings their table); other mentions of a keyword are left alone."""
    def flags(instruction: re.Match) -> str:
        return re.sub(_KEYWORD, lambda m: KEYWORD_FLAGS[m.group(0)], instruction.group(0))

    return _SETTINGS.sub(lambda m: SETTING_FLAGS[m.group(0)], _INSTRUCTION.sub(flags, text))


def safe_text(text: object) -> str:
    """``text`` fit for one terminal line: control characters (escape sequences, newlines) shown as
    ``\\x1b``, ``\\n``..., and a file name's bytes that are not valid text as ``\\xNN`` (as in the
    tables: :func:`hybridtmd._utils.files.path_text`), never sent raw."""
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

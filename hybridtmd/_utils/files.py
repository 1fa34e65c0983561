"""Files written and read safely: atomic writes (a reader never sees half a file), file names as
text for tables and back, and JSON parsing that refuses nesting deeper than the recursion limit."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


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

def save_figure(fig: Any, path: str | Path, *, dpi: int = 120, tight: bool = False) -> Path:
    """Write a matplotlib figure as PNG atomically (readers never see half a file) and close it.

    ``tight``: crop to the drawn content (for figures whose long labels overflow their axes).
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight" if tight else None)
    plt.close(fig)
    return path

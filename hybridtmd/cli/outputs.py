"""Output files and folders of the commands: checked before any work, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .messages import fail

TABLE_SUFFIXES = (".csv", ".parquet")


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (hard or symbolic links included) or would, once created."""
    import os

    try:
        return os.path.samefile(a, b) if a.exists() and b.exists() else a.resolve() == b.resolve()
    except (OSError, RuntimeError):
        return os.path.abspath(a) == os.path.abspath(b)


def check_output_file(path: Path, suffixes: tuple[str, ...] = TABLE_SUFFIXES, inputs: list[Path] = ()) -> None:
    """Fail before any work when ``path`` cannot be written: wrong suffix, a folder, a parent that is
    a file or not writable, or one of the ``inputs`` (an input file, an input folder's manifest)."""
    import os

    if path.is_dir():
        fail(f"{path}: is a folder; give a file name")
    for given in inputs:
        for protected in (given, given / "manifest.csv") if given.is_dir() else (given,):
            if _same_file(path, protected):
                fail(f"{path}: is an input ({protected}); writing there would overwrite it - give another file")
    if suffixes and path.suffix.lower() not in suffixes:
        fail(f"{path}: output must end in {' or '.join(suffixes)}")
    parent = path.parent if str(path.parent) else Path(".")
    existing = next((p for p in [parent, *parent.parents] if p.exists()), Path("."))
    if not existing.is_dir():
        fail(f"{path}: cannot write there ({existing} is a file, not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):
        fail(f"{path}: cannot write there ({existing} is not writable)")
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            fail(f"{path}: writing .parquet needs pyarrow; install the extra: pip install 'hybridtmd[parquet]'")


def check_not_input_folder(output: Path, paths: list[Path]) -> None:
    """Fail before any work when files written into the folder ``output`` could replace the input
    ``paths`` (``output`` is the folder of one of them)."""
    folders = {p.parent for p in paths}
    clash = next((f for f in folders if _same_file(output, f)), None)
    if clash is not None:
        fail(f"{output}: holds the input files; writing there would overwrite them - give another folder")


def check_output_dir(path: Path) -> None:
    """Fail before any work when the folder ``path`` cannot be created or written."""
    import os

    if path.exists() and not path.is_dir():
        fail(f"{path}: is a file; give a folder")
    existing = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    if not existing.is_dir():
        fail(f"{path}: cannot create it ({existing} is a file, not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):
        fail(f"{path}: cannot write there ({existing} is not writable)")


def write_table(frame: Any, path: Path) -> None:
    """Write a table atomically as CSV, or as parquet when ``path`` ends in ``.parquet``."""
    from .._utils.files import atomic_path, atomic_write_csv

    if path.suffix.lower() == ".parquet":
        with atomic_path(path, suffix=".parquet") as tmp:
            frame.to_parquet(tmp, index=False)
    else:
        atomic_write_csv(frame, path, index=False)



"""Checks a manifest's rows get before any image is read: where its paths point, what kind of
file they name, and which name the same content twice (the ``hybridtmd dataset`` check).

A path outside the manifest's folder (``../../etc/passwd``) is said with a warning; a row naming
something that is not a regular file (a FIFO, a device, a folder) is skipped with that reason and
never opened (reading a FIFO blocks forever, a device never ends). The content pass digests each
file's bytes: the same content under two samples is a train/test leak no grouped split can see;
the same content twice in one sample counts one scan twice.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from .._utils.files import path_text, text_path
from .._utils.progress import track

#: Paths named in the warning about paths outside the manifest's folder.
SHOWN_OUTSIDE = 3


def manifest_path(base: Path, text: str) -> Path:
    """The file a manifest row names: relative to the manifest's folder unless absolute. A name
    written with ``\\xNN`` escapes (:func:`~hybridtmd._utils.files.path_text`, how hybridtmd writes
    names that are not valid text) is that file when no file has the escaped name itself."""
    path = Path(text) if Path(text).is_absolute() else base / text
    if "\\" in text and not os.path.lexists(path):
        raw = Path(text_path(str(path)))
        if os.path.lexists(raw):
            return raw
    return path


def outside_folder(folder: Path, paths: Sequence[Path]) -> list[Path]:
    """The paths that resolve outside ``folder`` (symlinks followed where they resolve)."""
    root = os.path.realpath(folder)
    out = []
    for path in paths:
        real = os.path.realpath(path)
        if os.path.commonpath([root, real]) != root:
            out.append(path)
    return out


def outside_warning(manifest: Path, outside: Sequence[Path]) -> str:
    """The one-line warning about paths outside the manifest's folder, with the first few."""
    shown = ", ".join(path_text(p) for p in outside[:SHOWN_OUTSIDE])
    more = f" and {len(outside) - SHOWN_OUTSIDE} more" if len(outside) > SHOWN_OUTSIDE else ""
    return (f"{manifest}: {len(outside)} path(s) point outside the manifest's folder {manifest.parent}: "
            f"{shown}{more}")


def is_non_regular(path: Path) -> bool:
    """Whether ``path`` exists as something other than a regular file (found without opening it;
    a broken link is left to the reader, which says so)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def file_digest(path: Path) -> str | None:
    """SHA-256 of a regular file's bytes, None when it cannot be read (the reader says why)."""
    if is_non_regular(path):
        return None
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def content_duplicates(paths: Sequence[Path], groups: Sequence[str], *, progress: bool = False
                       ) -> list[tuple[str, str, str]]:
    """(first file, later file, reason) for every file whose bytes equal an earlier one's: under
    another sample (a leak) or in the same sample (one scan counted twice)."""
    first: dict[str, int] = {}
    found = []
    for i, path in enumerate(track(paths, total=len(paths), description="content digests", show=progress)):
        digest = file_digest(path)
        if digest is None:
            continue
        j = first.setdefault(digest, i)
        if j == i:
            continue
        if groups[j] != groups[i]:
            reason = (f"same content as a file of another sample ({groups[i]} vs {groups[j]}): a train/test leak "
                      "that grouped folds cannot see")
        else:
            reason = f"same content listed twice in sample {groups[i]}: one scan counted twice"
        found.append((path_text(paths[j]), path_text(path), reason))
    return found


__all__ = ["content_duplicates", "file_digest", "is_non_regular", "manifest_path", "outside_folder",
           "outside_warning"]

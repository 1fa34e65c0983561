"""What a model directory's manifest and neighbours may hold that a save or a hand did not mean:
a malformed or out-of-range ``format_version``, and staging folders (``.NAME.new-*``) a save
that crashed (killed, power cut) left beside the model.

A save writes into ``.NAME.new-XXXX`` and swaps it in (:func:`~.persistence.write_model_directory`);
a process killed mid-save leaves that folder. The next save of ``NAME`` removes those untouched
for :data:`STALE_AFTER_S` (no live save leaves its folder that long without a new file) and
names the younger ones, which may belong to a save still running.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .._utils.files import path_text
from .._utils.user_warnings import warn_at_user
from .._version import __version__
from ..errors import ModelFileError

#: A staging folder untouched this long (s) is a crashed save's.
STALE_AFTER_S = 3600.0


def check_format_version(path: Path, version: object, newest: int, oldest: int = 1) -> int:
    """``version`` (a manifest's ``format_version``) when this hybridtmd reads it; otherwise a
    :class:`ModelFileError` saying which case it is: malformed (not a whole number, e.g. the
    text ``"2"``), newer than this release reads, or older than the oldest format it reads."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelFileError(f"{path}: format_version {version!r} is not a whole number: the manifest was edited "
                             "or damaged (hybridtmd writes a number such as 5); save the model again")
    if version > newest:
        raise ModelFileError(f"{path}: model format {version} is newer than this hybridtmd ({__version__}) "
                             f"reads (format {newest}); upgrade hybridtmd")
    if version < oldest:
        raise ModelFileError(f"{path}: model format {version} is older than this hybridtmd ({__version__}) reads "
                             f"(formats {oldest} to {newest}; no release wrote format {version}): a damaged "
                             "manifest, or a model to train again")
    return version


def _last_touched(folder: Path) -> float:
    """The latest modification time of a folder and the entries directly in it."""
    times = [folder.lstat().st_mtime]
    for entry in os.scandir(folder):
        times.append(entry.stat(follow_symlinks=False).st_mtime)
    return max(times)


def clean_stale_staging(directory: Path) -> list[Path]:
    """Remove the staging folders of earlier, crashed saves of ``directory`` (``.NAME.new-*``
    beside it, untouched for :data:`STALE_AFTER_S`) and return them; warn naming younger ones."""
    parent, prefix = directory.parent, f".{directory.name}.new-"
    if not parent.is_dir():
        return []
    removed, recent = [], []
    now = time.time()
    for entry in sorted(parent.iterdir()):
        if not entry.name.startswith(prefix) or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            stale = now - _last_touched(entry) > STALE_AFTER_S
        except OSError:
            continue
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        else:
            recent.append(entry)
    if recent:
        warn_at_user(f"{path_text(parent)}: staging folder(s) of another save of {directory.name} (running, or "
                     f"crashed less than {STALE_AFTER_S / 3600:g} h ago; delete them if no save is running): "
                     f"{', '.join(path_text(p.name) for p in recent)}", UserWarning)
    return removed


__all__ = ["STALE_AFTER_S", "check_format_version", "clean_stale_staging"]

"""Model directories without pickle: a JSON manifest, plain-array ``.npz`` files and the SHA-256 of
every file, shared by every estimator that saves itself.

A model directory holds ``manifest.json`` and the files it lists. The manifest names its format
and version, the library versions that wrote it and the SHA-256 of each listed file, so loading
refuses a file that is missing or was modified after saving. Arrays are read with
``allow_pickle=False``: loading never runs code. Every file is written atomically.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._utils import atomic_path, atomic_write_text, file_sha256
from ..errors import ModelFileError

MANIFEST_NAME = "manifest.json"


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars and arrays and paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: str | Path, values: Any) -> None:
    """``values`` as indented JSON at ``path``, atomically (numpy values and paths allowed)."""
    atomic_write_text(path, json.dumps(values, indent=2, default=json_default))


def read_json(path: Path) -> Any:
    """The JSON at ``path``; :class:`ModelFileError` naming it when it is not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: not valid JSON ({exc})") from None


def library_versions(*distributions: str) -> dict[str, str]:
    """Versions of hybridtmd, Python, numpy and the given distributions (e.g. ``"scikit-learn"``),
    recorded in a manifest so a model's origin can be traced."""
    versions = {"hybridtmd": __version__, "python": platform.python_version(), "numpy": np.__version__}
    return versions | {name: metadata.version(name) for name in distributions}


def write_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Plain numeric or string arrays as an ``.npz`` at ``path``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz``; :class:`ModelFileError` naming it if it is not plain arrays."""
    try:  # allow_pickle=False: an object array or a pickle is refused, never unpickled
        with np.load(path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{path}: not a plain-array npz ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def write_manifest(directory: Path, format_name: str, format_version: int, entries: Mapping[str, Any],
                   files: Iterable[str], libraries: Iterable[str] = ()) -> dict[str, Any]:
    """Write ``manifest.json``: format, version, time, :func:`library_versions` of ``libraries``,
    ``entries`` and the SHA-256 of each of ``files`` (already written in ``directory``)."""
    manifest = {
        "format": format_name,
        "format_version": format_version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": library_versions(*libraries),
        **entries,
        "files": {name: file_sha256(directory / name) for name in files},
    }
    write_json(directory / MANIFEST_NAME, manifest)
    return manifest


def read_manifest(directory: Path, format_name: str, format_version: int, required: Iterable[str],
                  files: Iterable[str]) -> dict[str, Any]:
    """The checked manifest of a model directory.

    Raises :class:`ModelFileError` naming the file when the manifest is missing or not JSON, has
    another ``format_name``, a version above ``format_version`` (this release reads older ones),
    lacks a ``required`` entry, lists other files than ``files``, or when a listed file is missing
    or its SHA-256 differs from the manifest's (modified after saving).
    """
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise ModelFileError(f"{path}: missing; {directory} is not a hybridtmd model directory")
    manifest = read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != format_name:
        raise ModelFileError(f"{path}: not a hybridtmd model manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > format_version:
        raise ModelFileError(f"{path}: model format {version!r} is newer than this hybridtmd ({__version__}) "
                             f"reads (format {format_version}); upgrade hybridtmd")
    if missing := set(required) - set(manifest):
        raise ModelFileError(f"{path}: manifest lacks {sorted(missing)}")
    if not isinstance(manifest.get("files"), dict) or set(manifest["files"]) != set(files):
        raise ModelFileError(f"{path}: manifest lists unexpected files {sorted(manifest.get('files') or [])}")
    check_files(directory, manifest["files"])
    return manifest


def check_files(directory: Path, digests: Mapping[str, str]) -> None:
    """:class:`ModelFileError` naming the first file of ``digests`` (name → SHA-256) that is
    missing from ``directory`` or whose content differs."""
    for name, digest in digests.items():
        path = directory / name
        if not path.is_file():
            raise ModelFileError(f"{path}: missing (the model directory is incomplete)")
        if file_sha256(path) != digest:
            raise ModelFileError(f"{path}: content differs from the manifest's SHA-256 (modified after saving)")

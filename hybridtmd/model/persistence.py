"""Model directories without pickle: a JSON manifest, plain-array ``.npz`` files and the SHA-256 of
every file, shared by every estimator that saves itself.

A model directory holds ``manifest.json`` and the files it lists. The manifest names its format
and version, the library versions that wrote it and the SHA-256 of each listed file, and one
``directory_digest`` over the whole manifest (hence over every file): SHA-256, or HMAC-SHA256 with
a secret key (``key=`` or the ``HYBRIDTMD_MODEL_KEY`` environment variable) for models shared
between people. Loading refuses a file that is missing or was modified after saving, and a
manifest edited by hand. What this protects against: accidental changes (a copy gone wrong, an
edited setting, files of two models mixed) and naive edits. What it does not: without a key,
anyone can recompute the digest after editing; with a key, anyone who holds the key. Arrays are
read with ``allow_pickle=False``: loading never runs code.

A model is saved as a whole (:func:`write_model_directory`): into a temporary sibling directory,
then swapped in by renames, so a crash or a full disk leaves the previous model intact; a kill
between the two renames leaves it in a hidden sibling, which the next load or save moves back
(:func:`recover_interrupted_save`).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import hmac
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .._utils.digests import file_sha256
from .._utils.files import atomic_path, atomic_write_text, json_loads
from .._utils.user_warnings import warn_at_user
from .._version import __version__
from ..errors import ModelFileError
from .leftovers import check_format_version, clean_stale_staging

MANIFEST_NAME = "manifest.json"
#: environment variable holding the HMAC key of signed models (used when no ``key`` is passed)
KEY_VARIABLE = "HYBRIDTMD_MODEL_KEY"
#: the manifest entry holding the digest of everything else in it
DIGEST_ENTRY = "directory_digest"


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
        return json_loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # malformed, or nested too deeply
        raise ModelFileError(f"{path}: not valid JSON ({exc})") from None


def library_versions(*distributions: str) -> dict[str, str]:
    """Versions of hybridtmd, Python, numpy and the given distributions (e.g. ``"scikit-learn"``),
    recorded in a manifest so a model's origin can be traced."""
    versions = {"hybridtmd": __version__, "python": platform.python_version(), "numpy": np.__version__}
    return versions | {name: _installed_version(name) for name in distributions}


def _installed_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:  # an optional one (timm...): the record says so
        return "not installed"


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


def resolve_key(key: str | bytes | None) -> bytes | None:
    """The HMAC key: ``key``, else the :data:`KEY_VARIABLE` environment variable (unset or empty:
    none), else None. An explicit empty key is a ``ValueError``: it would sign with no secret."""
    key = os.environ.get(KEY_VARIABLE) or None if key is None else key
    if key is not None and not isinstance(key, str | bytes):
        raise TypeError(f"the model key must be str or bytes, not {type(key).__name__}")
    if key is not None and not key:
        raise ValueError("the model key is empty: an HMAC with no secret proves nothing; pass a secret or None")
    return key.encode() if isinstance(key, str) else key


def manifest_digest(manifest: Mapping[str, Any], key: bytes | None) -> str:
    """SHA-256 (or HMAC-SHA256 with ``key``) of the manifest's canonical JSON without
    :data:`DIGEST_ENTRY`; the manifest lists each file's SHA-256, so this covers every file."""
    body = {k: v for k, v in manifest.items() if k != DIGEST_ENTRY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=json_default).encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest() if key else hashlib.sha256(text).hexdigest()


def write_manifest(directory: Path, format_name: str, format_version: int, entries: Mapping[str, Any],
                   files: Iterable[str], libraries: Iterable[str] = (), key: str | bytes | None = None
                   ) -> dict[str, Any]:
    """Write ``manifest.json``: format, version, time, :func:`library_versions` of ``libraries``,
    ``entries``, the SHA-256 of each of ``files`` (already written in ``directory``) and the
    :func:`manifest_digest` (signed with the :func:`resolve_key` key, if any)."""
    manifest = {
        "format": format_name,
        "format_version": format_version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": library_versions(*libraries),
        **entries,
        "files": {name: file_sha256(directory / name) for name in files},
    }
    manifest = json.loads(json.dumps(manifest, default=json_default))  # the digest is of what is read back
    secret = resolve_key(key)
    manifest["signed"] = secret is not None
    manifest[DIGEST_ENTRY] = manifest_digest(manifest, secret)
    write_json(directory / MANIFEST_NAME, manifest)
    return manifest


def check_digest(path: Path, manifest: Mapping[str, Any], key: str | bytes | None, required: bool) -> None:
    """:class:`ModelFileError` naming ``path`` when the manifest's digest is absent (and
    ``required``: formats that write one), does not match, or needs a key that was not given; and,
    when a key is given (``key`` or :data:`KEY_VARIABLE`), when the model is not signed - else a
    forger without the key would mark a model unsigned (or drop the digest and claim an older
    format) and recompute a plain SHA-256."""
    secret = resolve_key(key)
    if secret is not None and (DIGEST_ENTRY not in manifest or manifest.get("signed") is not True):
        raise ModelFileError(f"{path}: the model is not signed, but a key is set: only signed models load "
                             f"with a key (unset {KEY_VARIABLE} to load unsigned ones)")
    if DIGEST_ENTRY not in manifest:
        if required:
            raise ModelFileError(f"{path}: lacks its {DIGEST_ENTRY} (edited, or not written by hybridtmd)")
        return
    if manifest.get("signed") is True and secret is None:
        raise ModelFileError(f"{path}: the model is signed; pass its key (key=... or {KEY_VARIABLE})")
    if not isinstance(manifest[DIGEST_ENTRY], str) or not hmac.compare_digest(
            manifest[DIGEST_ENTRY], manifest_digest(manifest, secret)):
        raise ModelFileError(f"{path}: {DIGEST_ENTRY} does not match its content (the manifest was modified "
                             f"after saving{', or the key is wrong' if secret else ''})")


def check_model_target(directory: str | Path, marker: str = MANIFEST_NAME) -> None:
    """:class:`ModelFileError` when a model may not be saved to ``directory``: it is a file, or a
    folder that is neither empty nor a model directory (no ``marker``) - a dataset, a thesis...
    Called by :func:`write_model_directory`, and by commands before the work that makes the model."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ModelFileError(f"{directory}: exists and is not a directory; will not replace it with a model")
    if directory.is_dir() and any(directory.iterdir()) and not (directory / marker).is_file():
        raise ModelFileError(f"{directory}: exists, is not empty and holds no {marker}; "
                             "will not replace it with a model (choose a new or empty directory)")


def write_model_directory(directory: str | Path, write: Callable[[Path], Any], marker: str = MANIFEST_NAME) -> Path:
    """Call ``write(tmp)`` to fill a temporary sibling of ``directory``, then swap it in.

    The previous content of ``directory`` stays whole until the new model is complete: a crash or
    a full disk while writing leaves it untouched (and removes the temporary). The swap is two
    renames (old aside into ``.NAME.old-*``, new in place), then the old one is deleted; an error
    between the two renames puts the old one back, and a kill there leaves it for
    :func:`recover_interrupted_save`, which this function (and :func:`read_manifest`) calls first.
    Leftovers of interrupted saves (``.NAME.new-*``, ``.NAME.old-*``) are removed: one save into a
    directory at a time. An existing ``directory`` that is not a model directory (no ``marker``
    file) and not empty is never replaced: :class:`ModelFileError`.
    """
    directory = Path(directory)
    recover_interrupted_save(directory, marker)
    check_model_target(directory, marker)
    directory.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(directory)  # .NAME.new-* of crashed saves (one of a running save is only named)
    for stale in _swap_folders(directory, "old"):  # recovered above, or a finished swap's leftover
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.new-"))
    old = None
    try:
        write(tmp)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the model normal permissions
        if directory.exists():
            old = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.old-"))
            os.replace(directory, old / "model")
        try:
            os.replace(tmp, directory)
        except BaseException:
            if old is not None and (old / "model").exists():
                os.replace(old / "model", directory)  # the previous model back in place
            raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
        if old is not None and (directory.exists() or not (old / "model").exists()):
            shutil.rmtree(old, ignore_errors=True)  # else it holds the only copy: kept for recovery
    remember_saved(directory, marker)
    return directory


#: the digests of the models saved under this user account, one per line (newest last), in
#: :func:`state_dir`: what :func:`unsigned_and_foreign` calls "saved here"
SAVED_LIST = "saved_models.txt"
#: entries kept in :data:`SAVED_LIST`
SAVED_KEPT = 10_000


def state_dir() -> Path:
    """hybridtmd's state folder of this account: ``$XDG_STATE_HOME/hybridtmd`` (default
    ``~/.local/state/hybridtmd``)."""
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "hybridtmd"


def _saved_digests() -> list[str]:
    try:
        return (state_dir() / SAVED_LIST).read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError):
        return []


def remember_saved(directory: Path, marker: str = MANIFEST_NAME) -> None:
    """Add the digest of the model just saved in ``directory`` to :data:`SAVED_LIST` (a state
    folder that cannot be written only costs the "saved here" status, never the save)."""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        digest = str(read_json(directory / marker)[DIGEST_ENTRY])
        (state_dir()).mkdir(parents=True, exist_ok=True)
        atomic_write_text(state_dir() / SAVED_LIST, "\n".join([*_saved_digests(), digest][-SAVED_KEPT:]) + "\n")


def unsigned_and_foreign(directory: str | Path) -> bool:
    """Whether a model directory is unsigned (no HMAC: anyone can edit it and recompute its digest)
    and was not saved under this account (its digest is not in :data:`SAVED_LIST`: made
    elsewhere, copied from someone, or edited since it was saved here)."""
    try:
        manifest = read_json(Path(directory) / MANIFEST_NAME)
    except (OSError, ModelFileError):
        return False
    if not isinstance(manifest, dict) or manifest.get("signed") is True:
        return False
    return str(manifest.get(DIGEST_ENTRY)) not in set(_saved_digests())


def _swap_folders(directory: Path, kind: str) -> list[Path]:
    """The hidden siblings a save of ``directory`` makes: ``kind`` "new" (the model being
    written) or "old" (the previous model, moved aside during the swap)."""
    return sorted(p for p in directory.parent.glob(f".{glob.escape(directory.name)}.{kind}-*") if p.is_dir())


def recover_interrupted_save(directory: str | Path, marker: str = MANIFEST_NAME) -> Path | None:
    """Put back the previous model of a save killed between its two renames: when ``directory``
    is missing and a ``.NAME.old-*/model`` beside it holds a model (``marker``), the newest one
    is moved back to ``directory``, with a warning. Returns the folder it came from, or None.
    An ``OSError`` (e.g. a read-only folder) is a :class:`ModelFileError` naming that folder."""
    directory = Path(directory)
    if directory.exists() or not directory.parent.is_dir():
        return None
    kept = [p / "model" for p in _swap_folders(directory, "old") if (p / "model" / marker).is_file()]
    if not kept:
        return None
    source = max(kept, key=lambda p: p.stat().st_mtime)
    try:
        os.replace(source, directory)
    except OSError as exc:
        raise ModelFileError(f"{directory}: missing; an interrupted save left the previous model in {source}, "
                             f"which could not be moved back ({exc}): move it to {directory}") from None
    with contextlib.suppress(OSError):
        source.parent.rmdir()
    warn_at_user(f"{directory}: restored the previous model from {source.parent}, left by a save that was "
                 "interrupted between its two renames")
    return source.parent


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_manifest(directory: Path, format_name: str, format_version: int, required: Iterable[str],
                  files: Iterable[str], key: str | bytes | None = None, digest_since: int | None = None,
                  upgrade: Callable[[dict[str, Any], int, Path], dict[str, Any]] | None = None
                  ) -> dict[str, Any]:
    """The checked manifest of a model directory.

    Raises :class:`ModelFileError` naming the file when the manifest is missing or not JSON, has
    another ``format_name``, a version above ``format_version`` (this release reads older ones),
    lacks a ``required`` entry, lists other files than ``files``, fails :func:`check_digest`
    (required from format ``digest_since`` on), or when a listed file is missing or its SHA-256
    differs from the manifest's (modified after saving). ``upgrade(manifest, version, path)``
    turns the checked manifest of an older format into the entries these checks expect.
    """
    path = directory / MANIFEST_NAME
    recover_interrupted_save(directory)
    if not path.is_file():
        raise ModelFileError(f"{path}: missing; {directory} is not a hybridtmd model directory")
    manifest = read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != format_name:
        raise ModelFileError(f"{path}: not a hybridtmd model manifest")
    version = check_format_version(path, manifest.get("format_version"), format_version)
    check_digest(path, manifest, key, required=digest_since is not None and version >= digest_since)
    if upgrade is not None:
        manifest = upgrade(manifest, version, path)
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

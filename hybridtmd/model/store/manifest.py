"""The store's manifest ``store.json`` and its partition files: names, creation, the resume check."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..._utils.files import atomic_write_text, json_loads
from ..._version import __version__
from ...errors import HybridTMDError, MissingDependencyError

MANIFEST = "store.json"
FORMAT = "hybridtmd-feature-store"
FORMAT_VERSION = 1
EXTRA_HINT = "pip install 'hybridtmd[dask]'"


def part_file(store_dir: Path, index: int, kind: str, prefix: str = "part") -> Path:
    """File of partition ``index``: ``kind`` "parquet" (its rows) or "errors.json" (its sidecar);
    ``prefix`` "part" for features, "pred" for predictions."""
    return store_dir / f"{prefix}-{index:06d}.{kind}"


def finished(store_dir: Path, index: int, prefix: str = "part") -> bool:
    """True when both files of partition ``index`` exist (the sidecar is written last)."""
    return (part_file(store_dir, index, "errors.json", prefix).exists()
            and part_file(store_dir, index, "parquet", prefix).exists())


def require_pyarrow() -> None:
    """:class:`MissingDependencyError` when pyarrow (the parquet engine) is absent."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise MissingDependencyError(f"the feature store writes parquet, which needs pyarrow: {EXTRA_HINT}") from None


def plain(value: Any) -> Any:
    """A JSON-comparable form of a settings object (dataclasses -> dicts, tuples -> lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value, default=str))


def paths_digest(paths: Sequence[str]) -> str:
    """SHA-256 of an ordered list of paths."""
    # NUL cannot occur in a path, so the joined list has one reading
    h = hashlib.sha256()
    for p in paths:
        h.update(p.encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()


def base_manifest(paths: Sequence[str], partition_size: int, fmt: str = FORMAT) -> dict[str, Any]:
    """What every partitioned folder records: its format, version, files and partitions."""
    return {
        "format": fmt,
        "format_version": FORMAT_VERSION,
        "hybridtmd_version": __version__,
        "n_paths": len(paths),
        "paths_sha256": paths_digest(paths),
        "partition_size": partition_size,
        "n_partitions": -(-len(paths) // partition_size),
    }


def kind_of(fmt: str) -> str:
    """What a format names, for messages: ``hybridtmd-feature-store`` -> ``feature store``."""
    return fmt.removeprefix("hybridtmd-").replace("-", " ")


def read_manifest(store_dir: str | Path, name: str = MANIFEST, fmt: str = FORMAT) -> dict[str, Any]:
    """The manifest (``store.json``) of a store; a :class:`HybridTMDError` if there is none."""
    path = Path(store_dir) / name
    try:
        manifest = json_loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HybridTMDError(f"{store_dir}: not a {kind_of(fmt)} (no {name})") from None
    except (OSError, ValueError) as exc:
        raise HybridTMDError(f"{path}: unreadable store manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        raise HybridTMDError(f"{path}: not a hybridtmd {kind_of(fmt)} manifest")
    return manifest


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Short description of how two manifests differ, e.g. ``extractor.families ['areal'] -> ['grains']``.
    A key absent on one side counts as None, so a store made before a setting was recorded
    resumes while the setting keeps its default."""
    import reprlib

    short = reprlib.Repr()  # attributes, not keywords: keywords need Python 3.12
    short.maxlist, short.maxstring, short.maxother = 4, 40, 40
    old_flat, new_flat = _flatten(old), _flatten(new)
    keys = [k for k in dict.fromkeys([*old_flat, *new_flat]) if old_flat.get(k) != new_flat.get(k)]
    if any(k.startswith(("extractor.", "embedder.")) for k in keys):
        keys = [k for k in keys if k != "columns"]  # follows from the extractor settings
    return "; ".join("the list of input files differs" if key == "paths_sha256"
                     else f"{key} {short.repr(old_flat.get(key))} -> {short.repr(new_flat.get(key))}"
                     for key in keys)


def open_store(store_dir: Path, manifest: dict[str, Any], name: str = MANIFEST, prefix: str = "part") -> None:
    """Create the store, or check that an existing one was made with the same inputs and settings."""
    if (store_dir / name).exists():
        differ = differences(read_manifest(store_dir, name, manifest["format"]), manifest)
        if differ:
            raise HybridTMDError(
                f"{store_dir}: cannot resume this {kind_of(manifest['format'])}, it was made with other inputs or "
                f"settings ({differ}); use a new store directory or delete this one")
        return
    if any(store_dir.glob(f"{prefix}-*")):
        raise HybridTMDError(f"{store_dir}: holds partition files but no {name}; refusing to mix stores")
    atomic_write_text(store_dir / name, json.dumps(manifest, indent=1))

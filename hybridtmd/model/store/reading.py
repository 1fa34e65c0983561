"""Reading a complete feature store: its table, the reasons of its NaNs, its bad files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ..._utils.files import json_loads
from ...errors import HybridTMDError
from .manifest import finished, part_file, read_manifest, require_pyarrow


def sidecars(store_dir: Path, n_parts: int, prefix: str = "part") -> Iterator[dict[str, Any]]:
    """The sidecars (``.errors.json``) of the finished partitions, in partition order."""
    for i in range(n_parts):
        if finished(store_dir, i, prefix):
            yield json_loads(part_file(store_dir, i, "errors.json", prefix).read_text(encoding="utf-8"))


def check_complete(store_dir: Path, manifest: dict[str, Any] | None = None, prefix: str = "part") -> int:
    """Number of partitions; a :class:`HybridTMDError` naming the missing ones if any."""
    n_parts = int((manifest or read_manifest(store_dir))["n_partitions"])
    missing = [i for i in range(n_parts) if not finished(store_dir, i, prefix)]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise HybridTMDError(f"{store_dir}: store is incomplete, {len(missing)} of {n_parts} partition(s) "
                             f"unfinished ({shown}); rerun the same command to finish it")
    return n_parts


def read_store(store_dir: str | Path) -> pd.DataFrame:
    """The whole feature table of a complete store: column ``path`` then the descriptors (and the
    embedding columns of a store made with an embedder), rows in input order (bad files have no
    row). For a store larger than memory use ``dask.dataframe.read_parquet(f"{store_dir}/part-*.parquet")``."""
    require_pyarrow()
    store_dir = Path(store_dir)
    n_parts = check_complete(store_dir)
    columns = read_manifest(store_dir)["columns"]
    frames = [pd.read_parquet(part_file(store_dir, i, "parquet"), engine="pyarrow") for i in range(n_parts)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=str if c == "path" else "float64") for c in columns})
    return pd.concat(frames, ignore_index=True)[columns]


def read_store_reasons(store_dir: str | Path) -> pd.DataFrame:
    """Every undefined (NaN) value of a complete store: columns ``path``, ``feature``, ``reason``."""
    store_dir = Path(store_dir)
    rows = [row for sidecar in sidecars(store_dir, check_complete(store_dir)) for row in sidecar["undefined"]]
    return pd.DataFrame(rows, columns=["path", "feature", "reason"])


def store_errors(store_dir: str | Path) -> list[tuple[str, str]]:
    """Bad files (path, reason) of the finished partitions of a store, in input order."""
    store_dir = Path(store_dir)
    n_parts = int(read_manifest(store_dir)["n_partitions"])
    return [(p, r) for sidecar in sidecars(store_dir, n_parts) for p, r in sidecar["bad_files"]]

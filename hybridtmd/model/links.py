"""What each latent dimension tracks: its strongest physical correlate on the training table.

:func:`latent_correlates` correlates every embedding column (``latent__*``) of a feature table
with every physical descriptor column (``phys__*``) and keeps, per latent column, the descriptor
with the largest |Spearman ρ| among the pairs whose Benjamini-Hochberg q-value (Benjamini &
Hochberg, J. R. Stat. Soc. B 57, 289-300, 1995; one family over all latent × descriptor pairs)
is below ``alpha``. :class:`~hybridtmd.model.HybridClassifier` computes this table at ``fit`` on
its training rows (``latent_links_``) and saves it with the model (arrays ``links__*`` of
``arrays.npz``, checked at load by :func:`links_from_arrays`), so every latent name an
explanation shows carries a correlate learnt from the training data, not from the explained
images.

Cost: one rank transform of the table and one matrix product per block of columns that are
complete on the same rows (all complete columns in one block; a column with missing values on
its own finite rows): ``O(n (L + P) log n + n L P)`` for ``L`` latent and ``P`` physical
columns, no per-pair loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ModelFileError
from .columns import LATENT_PREFIX, PHYS_PREFIX

#: FDR level below which a latent-descriptor pair counts as a link
LINK_ALPHA = 0.05
#: the columns of a links table, one row per latent column
LINK_COLUMNS = ["latent", "descriptor", "unit", "spearman_rho", "pearson_r", "q", "n"]
#: prefix of the links' arrays in a model's arrays file
LINK_ARRAY_PREFIX = "links__"
_TEXT_COLUMNS = ("latent", "descriptor", "unit")
_NUMBER_COLUMNS = ("spearman_rho", "pearson_r", "q", "n")


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q) over the finite entries of ``p`` (any shape, one
    family); NaN stays NaN."""
    from scipy.stats import false_discovery_control

    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        q[finite] = false_discovery_control(p[finite], method="bh")
    return q


def matrix_correlation(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r of every column of ``X`` with every column of ``Y`` (finite, same rows) and its
    two-sided p-value from Student's t with n - 2 degrees of freedom, as scipy.stats.pearsonr
    gives it; NaN for a constant column."""
    from scipy.stats import t as student_t

    n = len(X)
    with np.errstate(invalid="ignore", divide="ignore"):
        # centred columns of unit norm, as scipy.stats.pearsonr forms them (exactly ±1 for a line)
        Xs, Ys = X - X.mean(axis=0), Y - Y.mean(axis=0)
        Xs, Ys = Xs / np.linalg.norm(Xs, axis=0), Ys / np.linalg.norm(Ys, axis=0)
        r = np.clip(Xs.T @ Ys, -1.0, 1.0)
        t = r * np.sqrt((n - 2) / np.clip(1.0 - r ** 2, 1e-300, None))
    return r, 2.0 * student_t.sf(np.abs(t), n - 2)


def _complete_blocks(A: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(columns, rows) blocks of ``A``: its complete columns on every row, then each column with a
    missing value on its own finite rows."""
    complete = np.isfinite(A).all(axis=0)
    blocks = [(np.flatnonzero(complete), np.ones(len(A), bool))]
    return blocks + [(np.array([j]), np.isfinite(A[:, j])) for j in np.flatnonzero(~complete)]


def correlation_matrices(X: np.ndarray, Y: np.ndarray) -> dict[str, np.ndarray]:
    """Pearson r and Spearman ρ (Pearson r of the ranks, as scipy.stats.spearmanr defines it) of
    every column of ``X`` with every column of ``Y``, with their two-sided p-values, on
    pairwise-complete rows: arrays ``(X columns, Y columns)`` named ``n``, ``pearson_r``,
    ``pearson_p``, ``spearman_rho``, ``spearman_p`` (NaN with fewer than three rows or a
    constant column)."""
    from scipy.stats import rankdata

    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    shape = (X.shape[1], Y.shape[1])
    out = {name: np.full(shape, np.nan) for name in ("pearson_r", "pearson_p", "spearman_rho", "spearman_p")}
    out["n"] = np.zeros(shape, dtype=np.int64)
    for x_cols, x_rows in _complete_blocks(X):
        for y_cols, y_rows in _complete_blocks(Y[x_rows]):
            if not len(x_cols) or not len(y_cols):
                continue
            rows = np.flatnonzero(x_rows)[y_rows]
            cell = np.ix_(x_cols, y_cols)
            out["n"][cell] = len(rows)
            if len(rows) < 3:
                continue
            Xb, Yb = X[np.ix_(rows, x_cols)], Y[np.ix_(rows, y_cols)]
            out["pearson_r"][cell], out["pearson_p"][cell] = matrix_correlation(Xb, Yb)
            out["spearman_rho"][cell], out["spearman_p"][cell] = matrix_correlation(rankdata(Xb, axis=0),
                                                                                    rankdata(Yb, axis=0))
    return out


def columns_with_prefix(names: Sequence[Any], prefix: str) -> list[str]:
    """The names (as strings) that start with ``prefix`` (``PHYS_PREFIX``, ``LATENT_PREFIX``), in order."""
    return [str(c) for c in names if str(c).startswith(prefix)]


def _units(descriptors: Sequence[str | None]) -> list[str]:
    """The registry unit of each ``phys__`` descriptor; ``""`` where unknown or no descriptor."""
    from ..descriptors import list_descriptors

    registry = list_descriptors()
    unit_of = dict(zip(registry["name"], registry["unit"], strict=True))
    return [unit_of.get(d[len(PHYS_PREFIX):], "") if d else "" for d in descriptors]


def latent_correlates(table: pd.DataFrame, *, alpha: float = LINK_ALPHA) -> pd.DataFrame:
    """The strongest physical correlate of **every** latent column of ``table`` (module docstring).

    One row per latent column (columns :data:`LINK_COLUMNS`): ``latent``, ``descriptor`` (None
    when no pair passes ``alpha``), ``unit`` (the descriptor's registry unit, ``""`` when
    unknown), ``spearman_rho``, ``pearson_r``, ``q`` (the pair's Spearman FDR q-value), ``n``
    (the largest number of pairwise-complete rows of the latent column).
    """
    latent = columns_with_prefix(table.columns, LATENT_PREFIX)
    physical = columns_with_prefix(table.columns, PHYS_PREFIX)
    if not latent or not physical:
        return pd.DataFrame({"latent": pd.Series(latent, dtype=object), "descriptor": pd.Series([None] * len(latent),
                             dtype=object), "unit": pd.Series([""] * len(latent), dtype=object), "spearman_rho": np.nan,
                             "pearson_r": np.nan, "q": np.nan, "n": 0}, columns=LINK_COLUMNS)
    named = table.set_axis([str(c) for c in table.columns], axis=1)
    stats = correlation_matrices(named[latent].to_numpy(dtype=np.float64), named[physical].to_numpy(dtype=np.float64))
    q = benjamini_hochberg(stats["spearman_p"])
    strength = np.where(q < alpha, np.abs(stats["spearman_rho"]), -1.0)  # NaN q or rho: never a link
    strength = np.where(np.isnan(strength), -1.0, strength)
    best = strength.argmax(axis=1)
    linked = strength[np.arange(len(latent)), best] >= 0
    pick = (np.arange(len(latent)), best)
    descriptors = [physical[j] if ok else None for j, ok in zip(best, linked, strict=True)]
    return pd.DataFrame({"latent": pd.Series(latent, dtype=object), "descriptor": pd.Series(descriptors, dtype=object),
                         "unit": pd.Series(_units(descriptors), dtype=object),
                         **{column: np.where(linked, values[pick], np.nan) for column, values in
                            (("spearman_rho", stats["spearman_rho"]), ("pearson_r", stats["pearson_r"]), ("q", q))},
                         "n": stats["n"].max(axis=1)}, columns=LINK_COLUMNS)


def fitted_links(X: np.ndarray, feature_names: Sequence[str]) -> pd.DataFrame | None:
    """:func:`latent_correlates` of a training array with columns ``feature_names``; None when
    it lacks latent or physical columns (nothing to link)."""
    if not columns_with_prefix(feature_names, LATENT_PREFIX) or not columns_with_prefix(feature_names, PHYS_PREFIX):
        return None
    return latent_correlates(pd.DataFrame(X, columns=list(feature_names)))


def links_to_arrays(links: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """The links as plain arrays for a model's arrays file (text as unicode arrays, no descriptor
    as ``""``); nothing for None."""
    if links is None:
        return {}
    arrays = {LINK_ARRAY_PREFIX + c: np.asarray([v or "" for v in links[c]], dtype=str) for c in _TEXT_COLUMNS}
    arrays |= {LINK_ARRAY_PREFIX + c: links[c].to_numpy(dtype=np.float64) for c in _NUMBER_COLUMNS[:-1]}
    return arrays | {LINK_ARRAY_PREFIX + "n": links["n"].to_numpy(dtype=np.int64)}


def links_entry(links: pd.DataFrame | None) -> dict[str, Any] | None:
    """The manifest entry that says a model stores links (and at which FDR level)."""
    return None if links is None else {"alpha": LINK_ALPHA, "rows": len(links)}


def _check(path: Path, ok: bool, reason: str) -> None:
    if not ok:
        raise ModelFileError(f"{path}: invalid latent links ({reason})")


def links_from_arrays(entry: Mapping[str, Any] | None, arrays: Mapping[str, np.ndarray],
                      feature_names: Sequence[str], training: Any, path: Path) -> pd.DataFrame | None:
    """The links table a model's arrays file holds, checked against the manifest: one row per
    latent column of ``feature_names`` in their order, descriptors among its physical columns,
    ρ and r in [-1, 1], q in [0, 1], both NaN exactly where there is no descriptor, ``n`` within
    the training images (``training``: the manifest's training summary). None for a model saved
    without links (``entry`` absent). A wrong file is a :class:`ModelFileError` naming ``path``."""
    if entry is None:
        return None
    n_images = training.get("n_images") if isinstance(training, dict) else None
    _check(path, isinstance(n_images, int), "the manifest's training summary lacks n_images")
    _check(path, isinstance(entry, dict) and isinstance(entry.get("rows"), int), "manifest entry is not {rows: int}")
    missing = [c for c in LINK_COLUMNS if LINK_ARRAY_PREFIX + c not in arrays]
    _check(path, not missing, f"lacks the arrays {[LINK_ARRAY_PREFIX + c for c in missing]}")
    values = {c: np.asarray(arrays[LINK_ARRAY_PREFIX + c]) for c in LINK_COLUMNS}
    _check(path, all(v.shape == (entry["rows"],) for v in values.values()), f"arrays are not all of length "
                                                                             f"{entry['rows']}")
    _check(path, all(values[c].dtype.kind == "U" for c in _TEXT_COLUMNS), "latent, descriptor, unit must be text")
    _check(path, values["latent"].tolist() == columns_with_prefix(feature_names, LATENT_PREFIX),
           "rows are not the model's latent columns in order")
    descriptors = values["descriptor"].tolist()
    physical = set(columns_with_prefix(feature_names, PHYS_PREFIX))
    _check(path, all(d == "" or d in physical for d in descriptors),
           "a descriptor is not a physical column of the model")
    linked = np.array([d != "" for d in descriptors], bool)
    for column, low in (("spearman_rho", -1.0), ("pearson_r", -1.0), ("q", 0.0)):
        v = values[column].astype(np.float64)
        in_range = (v[linked] >= low) & (v[linked] <= 1.0)
        _check(path, bool((np.isnan(v) == ~linked).all() and in_range.all()),
               f"{column} outside [{low:g}, 1] where a descriptor is named, or not NaN where none is")
    _check(path, values["n"].dtype.kind in "iu" and bool(((values["n"] >= 0) & (values["n"] <= n_images)).all()),
           f"n outside [0, {n_images}]")
    text = {c: pd.Series(values[c].tolist(), dtype=object) for c in _TEXT_COLUMNS}
    text["descriptor"] = pd.Series([d or None for d in descriptors], dtype=object)
    numbers = {c: values[c].astype(np.float64) for c in _NUMBER_COLUMNS[:-1]} | {"n": values["n"].astype(np.int64)}
    return pd.DataFrame(text | numbers, columns=LINK_COLUMNS)

"""Feature-table columns: the name prefixes that say what a column is, its group and unit, and
the alignment of a table's columns to those a model was trained on.

Column names explain themselves::

    phys__grain_density_per_um2, phys__sq_nm, ...   # physical descriptors (of the height map)
    phys__phase__sq, phys__phase__glcm_...           # descriptors of another channel (here phase)
    latent__0000 ... latent__1279                    # embedding dimensions
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..descriptors import list_descriptors
from ..descriptors.extract import channel_unit, column_descriptor
from ..errors import HybridTMDError
from ..io import AFMImage
from ..io.image import HEIGHT_CHANNEL

PHYS_PREFIX = "phys__"
LATENT_PREFIX = "latent__"
LATENT_GROUP = "latent"
#: prefix of the stack head's SVM-probability columns, functions of the embedding (group latent)
SVM_PROBA_PREFIX = "latent_svm__p_"


class FeatureMismatchError(HybridTMDError, ValueError):
    """A feature table at predict time lacks columns the model was trained on."""


class NonFiniteFeatureError(HybridTMDError, ValueError):
    """Feature rows with infinite values (an overflowing descriptor, a corrupt table): refused
    before they reach the head. ``rows`` are their positions, ``reasons`` one text per row."""

    def __init__(self, rows: Sequence[int], reasons: Sequence[str]):
        self.rows, self.reasons = list(rows), list(reasons)
        more = f" (and {len(self.rows) - 5} more)" if len(self.rows) > 5 else ""
        super().__init__(f"{len(self.rows)} row(s) with infinite feature values: " + "; ".join(self.reasons[:5]) + more)


def check_finite_features(table: np.ndarray, columns: Sequence[str], names: Callable[[], Sequence[str]],
                          float32: bool = False) -> None:
    """:class:`NonFiniteFeatureError` naming each row (``names()``, called only then) with an
    infinite value, with ``float32`` also one beyond float32's range (what a head is fitted on:
    XGBoost's training matrix is float32, where 1e300 is inf), and its first such columns; NaN (a
    missing value) is allowed. At prediction a huge finite row is flagged out of distribution."""
    with np.errstate(invalid="ignore"):
        infinite = np.abs(table) > np.finfo(np.float32).max if float32 else np.isinf(table)
    if not infinite.any():
        return
    row_names = names()
    rows = np.flatnonzero(infinite.any(axis=1))
    reasons = []
    for i in rows:
        bad = [str(columns[j]) for j in np.flatnonzero(infinite[i])]
        reasons.append(f"{row_names[i]}: {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} infinite"
                       f"{' or beyond float32' if float32 else ''}")
    raise NonFiniteFeatureError(rows.tolist(), reasons)


class NonNumericFeatureError(HybridTMDError, ValueError):
    """A feature table cell that is not a number (text in a numeric column): the message names
    the column, the row and the value."""


def check_numeric_cells(table: Any, names: Callable[[], Sequence[str]]) -> None:
    """:class:`NonNumericFeatureError` naming the column, row (``names()``) and value of the
    first cell of a DataFrame that is neither a number nor empty, and how many more there are."""
    if not isinstance(table, pd.DataFrame):
        return
    for column in table.columns:
        values = table[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        bad = np.flatnonzero(pd.to_numeric(values, errors="coerce").isna().to_numpy() & values.notna().to_numpy())
        if len(bad):
            more = f" ({len(bad) - 1} more cell(s) in the column)" if len(bad) > 1 else ""
            raise NonNumericFeatureError(f"column {str(column)!r}, {names()[bad[0]]}: {values.iloc[bad[0]]!r} is "
                                         f"not a number{more}")


def checked_array(estimator: Any, table: Any, names: Callable[[int], Sequence[str]], *, reset: bool,
                  columns: Sequence[str] | None = None) -> np.ndarray:
    """``table`` as the float64 array the head sees (scikit-learn's ``validate_data``), text cells
    and infinite values (when fitting, ``reset``: beyond float32) refused, each naming its column
    and row (``names(n_rows)``)."""
    from sklearn.utils.validation import validate_data

    check_numeric_cells(table, lambda: names(len(table)))
    X_arr = validate_data(estimator, table, ensure_all_finite=False, reset=reset, dtype=np.float64)
    if columns is None:
        columns = getattr(estimator, "feature_names_in_", [f"x{i}" for i in range(X_arr.shape[1])])
    check_finite_features(X_arr, columns, lambda: names(len(X_arr)), float32=reset)
    return X_arr


def row_names(X: Any, table: Any, n_rows: int) -> list[str]:
    """A name per row for messages: the image's source file, the table's index label, or ``row i``."""
    if is_image_sequence(X):
        items = [X] if isinstance(X, (AFMImage, Mapping)) else list(X)
        sources = [item.source if isinstance(item, AFMImage) else next(
            (im.source for im in item.values() if im.source), None) for item in items]
        return [source or f"image {i}" for i, source in enumerate(sources)]
    if isinstance(table, pd.DataFrame):
        return [f"row {label!r}" for label in table.index]
    return [f"row {i}" for i in range(n_rows)]


def feature_groups_from_columns(columns: Sequence[str]) -> dict[str, list[str]]:
    """Group columns by their meaning, from their names alone.

    ``phys__<descriptor>`` → the descriptor's family (``paper``, ``areal``...; ``physical`` for a
    name the registry does not know), ``phys__<channel>__<descriptor>`` → ``<channel>__<family>``
    (``phase__areal``), ``latent__*`` and the stack head's SVM probabilities ``latent_svm__p_*`` →
    ``latent``, anything else → ``other``. Groups are in first-appearance order.
    """
    registry = list_descriptors()
    family_of = dict(zip(registry["name"], registry["family"], strict=True))
    groups: dict[str, list[str]] = {}
    for col in map(str, columns):
        if col.startswith(PHYS_PREFIX):
            name = col[len(PHYS_PREFIX):]
            if name in family_of:
                group = family_of[name]
            else:
                channel, spec = column_descriptor(name)
                family = "physical" if spec is None else spec.family
                group = family if channel == HEIGHT_CHANNEL else f"{channel}__{family}"
        elif col.startswith((LATENT_PREFIX, SVM_PROBA_PREFIX)):
            group = LATENT_GROUP
        else:
            group = "other"
        groups.setdefault(group, []).append(col)
    return groups


def feature_units(columns: Sequence[str], channel_units: Mapping[str, str] | None = None) -> dict[str, str]:
    """Unit of every column: the descriptor's unit for ``phys__*`` (for another channel's
    descriptor in that channel's unit, ``channel_units[channel]`` or ``a.u.``), ``a.u.``
    otherwise."""
    registry = list_descriptors()
    unit_of = dict(zip(registry["name"], registry["unit"], strict=True))
    units = {}
    for col in map(str, columns):
        name = col[len(PHYS_PREFIX):] if col.startswith(PHYS_PREFIX) else None
        if name is None or name in unit_of:
            units[col] = "a.u." if name is None else unit_of[name]
            continue
        channel, spec = column_descriptor(name)
        units[col] = "a.u." if spec is None else channel_unit(spec, (channel_units or {}).get(channel, "a.u."))
    return units


def latent_column_name(column: str) -> str:
    """The table name of an embedder column: ``latent_0123`` → ``latent__0123``; ``pca_00`` →
    ``latent__pca_00``."""
    return LATENT_PREFIX + (column[len("latent_"):] if column.startswith("latent_") else column)


def latent_table(embeddings: np.ndarray, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """An embedding matrix as a feature table with ``latent__0000...`` columns (e.g. the paper's
    embedding npz), ready for :class:`~hybridtmd.model.HybridClassifier`."""
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (images x dimensions), got shape {embeddings.shape}")
    names = columns or [f"{LATENT_PREFIX}{i:04d}" for i in range(embeddings.shape[1])]
    return pd.DataFrame(embeddings, columns=list(names))


def latent_mask(columns: Sequence[str]) -> np.ndarray:
    """Which columns are embedding dimensions (``latent__*``), as a boolean mask."""
    return np.array([str(c).startswith(LATENT_PREFIX) for c in columns], bool)


def is_image_sequence(X: Any) -> bool:
    """True when ``X`` is an AFMImage, a mapping channel -> AFMImage, or a non-empty sequence of
    them (rather than a table)."""
    if isinstance(X, AFMImage) or _is_channel_map(X):
        return True
    if isinstance(X, (pd.DataFrame, np.ndarray)) or not isinstance(X, Sequence) or isinstance(X, str):
        return False
    return len(X) > 0 and (isinstance(X[0], AFMImage) or _is_channel_map(X[0]))


def _is_channel_map(item: Any) -> bool:
    return isinstance(item, Mapping) and len(item) > 0 and all(isinstance(v, AFMImage) for v in item.values())


def align_columns(table: pd.DataFrame, names: Sequence[str], stacklevel: int = 1) -> pd.DataFrame:
    """``table`` with exactly the columns ``names``, in that order.

    Reordered columns are put back in order; extra columns are dropped with a warning; missing
    columns raise :class:`FeatureMismatchError` listing them (a model cannot guess them).
    ``stacklevel`` places the warning as if the caller had called :func:`warnings.warn` with it
    (1: the caller's line; a library function passes the depth of its user's call)."""
    names = [str(n) for n in names]
    columns = [str(c) for c in table.columns]
    missing = [n for n in names if n not in set(columns)]
    if missing:
        raise FeatureMismatchError(f"feature table lacks {len(missing)} column(s) the model was trained on, "
                                   f"e.g. {missing[:5]}")
    extra = [c for c in columns if c not in set(names)]
    if extra:
        warnings.warn(f"feature table has {len(extra)} column(s) the model does not use, ignored: {extra[:5]}",
                      UserWarning, stacklevel=stacklevel + 1)
    table = table.copy()
    table.columns = columns
    return table[names]

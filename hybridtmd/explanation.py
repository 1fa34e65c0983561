"""Explanations of the hybrid classifier: which physical characteristics drove a prediction.

SHAP values
    :func:`explain` gives exact TreeSHAP values (Lundberg et al., "From local explanations to
    global understanding with explainable AI for trees", Nat. Mach. Intell. 2, 56-67, 2020) of
    the XGBoost head, computed by XGBoost itself (``pred_contribs=True``), as a
    :class:`shap.Explanation`. They explain the **raw margin** (log-odds): for image ``i`` and
    class ``k``, ``values[i, :, k].sum() + base_values[i, k]`` is the margin XGBoost's softmax
    turns into probabilities. Every ``shap.plots.*`` function works on a per-class slice
    (``explanation[:, :, k]`` or :func:`class_explanation`).

Grouped attribution
    :func:`group_attributions` sums |SHAP| and signed SHAP over the model's feature groups
    (descriptor families ``paper``, ``areal``, ``spectral``, ``grains``, ``texture`` and the CNN
    ``latent`` block), per image and globally, and gives the share of the attribution carried by
    physical vs latent features for each class.

Latent dimensions made physical
    :func:`latent_physical_links` correlates the latent dimensions that drive each class with
    every physical descriptor (Pearson and Spearman, Benjamini-Hochberg FDR) and words the
    strongest link ("latent__0412 (top driver for WSe2) tracks grain_density_per_um2, ρ=0.71").
    :func:`latent_pca_correlation` reproduces the paper's analysis (Moses & Reinhart, Mach. Learn.:
    Sci. Technol. 5 045081, 2025; their ``codes/utils_analysis.py``: Pearson correlation of
    embedding features with the grain density, the DoG blob count and the local variation) on the
    principal components of the latent block.

Figures (matplotlib; each function returns a ``Figure``) and :func:`write_report`, which writes
them as PNG files plus one self-contained HTML report with the images embedded.
"""

from __future__ import annotations

import base64
import html
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._utils import atomic_path, atomic_write_csv, atomic_write_text
from .io import AFMImage
from .model import LATENT_GROUP, LATENT_PREFIX, PHYS_PREFIX, HybridClassifier, feature_units, is_image_sequence

#: The paper's three image properties correlated with the embeddings, as descriptor columns: its
#: "grain density" (regions of the opened Otsu mask per pixel, see the registry definition), the
#: DoG blob count and the normalised local variation.
PAPER_FEATURES: tuple[str, ...] = (
    PHYS_PREFIX + "paper_domain_density_per_px",
    PHYS_PREFIX + "paper_dog_blob_count",
    PHYS_PREFIX + "paper_local_variation",
)

PHYSICAL_BLOCK = "physical"
OTHER_BLOCK = "other"


# ---- SHAP values ------------------------------------------------------------------------------


def explain(model: HybridClassifier, X: Any, *, calibrated: bool = False) -> Any:
    """Exact TreeSHAP values of ``model`` for images or a feature table ``X``.

    Parameters
    ----------
    model : HybridClassifier
        Fitted, with an XGBoost head (the default).
    X : sequence of AFMImage or feature table
        What :meth:`HybridClassifier.predict` accepts.
    calibrated : bool
        Explain the temperature-scaled logits instead of the raw margin. Temperature scaling
        divides the margins by ``T`` (softmax(margin / T) are the calibrated probabilities), and
        SHAP values are linear in the model output, so this divides values and base values by
        ``model.temperature_``; rankings and signs are unchanged. No-op without calibration.

    Returns
    -------
    shap.Explanation
        Multiclass: ``values`` (n_images, n_features, n_classes) and ``base_values``
        (n_images, n_classes), ``output_names`` the class labels, like shap's multi-output
        explanations. Binary (XGBoost has one margin, the log-odds of ``classes_[1]``):
        ``values`` (n_images, n_features), ``base_values`` (n_images,), ``output_names`` the
        positive class; the other class's log-odds are the negated values.
        ``data`` is the feature table the model saw, ``feature_names`` its raw column names
        (``phys__...``, ``latent__...``); :func:`display_names` gives names with units.
        Additivity: ``values.sum(axis=1) + base_values`` equals
        ``model.classifier_.predict(table, output_margin=True)`` up to float32 rounding.
    """
    import shap
    import xgboost

    booster = _booster(model)
    start = time.perf_counter()
    table = model.transform_features(X)
    data = table.to_numpy(dtype=np.float64)
    # the head was fitted on a bare array: no feature names, so none are checked here either
    contribs = booster.predict(xgboost.DMatrix(data, missing=np.nan, feature_names=None), pred_contribs=True,
                               validate_features=False).astype(np.float64)
    classes = [str(c) for c in model.classes_]
    if contribs.ndim == 3:  # (n, classes, features + bias) -> shap's (n, features, classes)
        values, base = np.moveaxis(contribs[:, :, :-1], 1, 2), contribs[:, :, -1]
        output_names: Any = classes
    else:
        values, base, output_names = contribs[:, :-1], contribs[:, -1], classes[-1]
    temperature = getattr(model, "temperature_", None)
    if calibrated and temperature:
        values, base = values / temperature, base / temperature
    return shap.Explanation(values=values, base_values=base, data=data, feature_names=list(table.columns),
                            output_names=output_names, compute_time=time.perf_counter() - start)


def _booster(model: HybridClassifier) -> Any:
    from sklearn.utils.validation import check_is_fitted
    from xgboost import XGBClassifier

    check_is_fitted(model, "classifier_")
    if not isinstance(model.classifier_, XGBClassifier):
        raise TypeError(f"exact TreeSHAP needs the XGBoost head, not {type(model.classifier_).__name__}; "
                        "fit HybridClassifier(classifier='xgboost') to explain it")
    return model.classifier_.get_booster()


def _per_class(explanation: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(values (n, f, k), base values (n, k), class names) of a binary or multiclass Explanation."""
    values = np.asarray(explanation.values, dtype=np.float64)
    base = np.asarray(explanation.base_values, dtype=np.float64)
    names = explanation.output_names
    if values.ndim == 3:
        names = [str(c) for c in names] if names is not None else [str(k) for k in range(values.shape[2])]
        return values, base.reshape(len(values), -1), names
    if values.ndim == 2:
        return values[:, :, None], base.reshape(-1, 1), [str(names) if names is not None else "output"]
    raise ValueError(f"expected the Explanation of several images (2-D or 3-D values), got shape {values.shape}")


def _class_index(explanation: Any, class_: int | str | None) -> int:
    _, _, names = _per_class(explanation)
    if class_ is None:
        return 0
    if isinstance(class_, (int, np.integer)) and not isinstance(class_, bool):
        if not -len(names) <= class_ < len(names):
            raise IndexError(f"class index {class_} out of range for {len(names)} output(s)")
        return int(class_) % len(names)
    if str(class_) not in names:
        raise KeyError(f"unknown class {class_!r}; the explanation has {names}")
    return names.index(str(class_))


def class_explanation(explanation: Any, class_: int | str | None = None) -> Any:
    """The 2-D Explanation of one class (index or label), for ``shap.plots.*``.

    For a binary explanation (one output) it is the explanation itself.
    """
    if np.ndim(explanation.values) == 2:
        _class_index(explanation, class_)  # still validates the name
        return explanation
    return explanation[:, :, _class_index(explanation, class_)]


def margins(explanation: Any) -> np.ndarray:
    """Model output each explanation adds up to, (n_images, n_classes): values + base values."""
    values, base, _ = _per_class(explanation)
    return values.sum(axis=1) + base


def predicted_class_index(explanation: Any) -> np.ndarray:
    """Index of the predicted class of each image, from the explained margins (binary: 0 when
    the margin of the positive class is below 0, else 1)."""
    m = margins(explanation)
    return (m[:, 0] > 0).astype(int) if np.ndim(explanation.values) == 2 else m.argmax(axis=1)


# ---- names with units -------------------------------------------------------------------------

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def format_unit(unit: str) -> str:
    """A registry unit in compact form: ``per µm²`` → ``µm⁻²``, ``per px`` → ``px⁻¹``;
    dimensionless (``1``) and ``a.u.`` → ``""``."""
    unit = unit.strip()
    if unit in ("1", "", "a.u."):
        return ""
    if unit.startswith("per "):
        base = unit[4:].strip()
        exponent = {"²": 2, "³": 3}.get(base[-1], 1)
        base = base[:-1] if exponent > 1 else base
        return base + f"-{exponent}".translate(_SUPERSCRIPT)
    return unit


def display_names(columns: Sequence[str]) -> dict[str, str]:
    """Column → readable name with its unit: ``phys__grain_density_per_um2`` →
    ``grain_density_per_um2 [µm⁻²]``; latent and unknown columns keep their name."""
    units = feature_units(list(columns))
    names = {}
    for col in columns:
        if col.startswith(PHYS_PREFIX):
            unit = format_unit(units[col])
            names[col] = col[len(PHYS_PREFIX):] + (f" [{unit}]" if unit else "")
        else:
            names[col] = col
    return names


def with_display_names(explanation: Any) -> Any:
    """A copy of ``explanation`` whose feature names carry units (for figures only: the raw
    column names of :func:`explain` are what tables and code should index by)."""
    import shap

    names = display_names(list(explanation.feature_names))
    return shap.Explanation(values=explanation.values, base_values=explanation.base_values,
                            data=explanation.data, feature_names=[names[c] for c in explanation.feature_names],
                            output_names=explanation.output_names)


def feature_importance(explanation: Any) -> pd.DataFrame:
    """Global importance: mean |SHAP| over images of every feature (rows) for each class
    (columns) and their sum ``total``, sorted by ``total`` (largest first). Units: margin
    (log-odds)."""
    values, _, names = _per_class(explanation)
    table = pd.DataFrame(np.abs(values).mean(axis=0), index=list(explanation.feature_names), columns=names)
    table["total"] = table.sum(axis=1)
    return table.sort_values("total", ascending=False, kind="stable").rename_axis("feature")


# ---- grouped attribution ----------------------------------------------------------------------


def block_of(group: str) -> str:
    """``latent`` for the CNN group, ``other`` for columns of no known kind, else ``physical``."""
    if group == LATENT_GROUP:
        return LATENT_GROUP
    return OTHER_BLOCK if group in (OTHER_BLOCK, "ungrouped") else PHYSICAL_BLOCK


@dataclass(frozen=True)
class GroupAttribution:
    """SHAP summed over feature groups (all in margin units, log-odds).

    Attributes
    ----------
    per_image : DataFrame
        Long table: ``image`` (row index), ``class``, ``group``, ``block`` (physical / latent /
        other), ``abs_shap`` (sum of |SHAP| of the group's features), ``signed_shap`` (their sum:
        how far the group moved that image's margin).
    global_abs, global_signed : DataFrame
        Group (rows) × class (columns): mean over images of ``abs_shap`` / ``signed_shap``.
    share : DataFrame
        Class (rows) × block (columns): fraction of the class's total mean |SHAP| carried by
        each block; rows sum to 1.
    """

    per_image: pd.DataFrame
    global_abs: pd.DataFrame
    global_signed: pd.DataFrame
    share: pd.DataFrame


def group_attributions(explanation: Any, groups: Mapping[str, Sequence[str]]) -> GroupAttribution:
    """Sum |SHAP| and signed SHAP over feature groups, per image and globally.

    ``groups`` maps a group to its columns (``model.feature_groups_``). Features in no group form
    the group ``ungrouped``; a feature in two groups is an error (it would be counted twice).
    """
    values, _, classes = _per_class(explanation)
    features = [str(f) for f in explanation.feature_names]
    position = {f: j for j, f in enumerate(features)}
    members: dict[str, list[int]] = {}
    seen: set[str] = set()
    for group, columns in groups.items():
        if overlap := seen & set(columns):
            raise ValueError(f"features in more than one group would be counted twice: {sorted(overlap)[:5]}")
        seen |= set(columns)
        members[group] = [position[c] for c in columns if c in position]
    if rest := [j for j, f in enumerate(features) if f not in seen]:
        members["ungrouped"] = rest
    members = {g: idx for g, idx in members.items() if idx}
    names = list(members)
    abs_sum = np.stack([np.abs(values[:, idx, :]).sum(axis=1) for idx in members.values()], axis=1)  # (n, g, k)
    signed = np.stack([values[:, idx, :].sum(axis=1) for idx in members.values()], axis=1)
    n = len(values)
    per_image = pd.DataFrame({
        "image": np.repeat(np.arange(n), len(names) * len(classes)),
        "class": np.tile(np.repeat(classes, len(names)), n),
        "group": np.tile(names, n * len(classes)),
        "abs_shap": np.moveaxis(abs_sum, 2, 1).ravel(),
        "signed_shap": np.moveaxis(signed, 2, 1).ravel(),
    })
    per_image.insert(3, "block", per_image["group"].map(block_of))
    global_abs = pd.DataFrame(abs_sum.mean(axis=0), index=names, columns=classes).rename_axis("group")
    global_signed = pd.DataFrame(signed.mean(axis=0), index=names, columns=classes).rename_axis("group")
    by_block = global_abs.groupby(global_abs.index.map(block_of)).sum()
    share = (by_block / by_block.sum(axis=0)).T.rename_axis("class")
    return GroupAttribution(per_image, global_abs, global_signed, share)


# ---- correlations -----------------------------------------------------------------------------


def _pearson(a: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Pearson r of vector ``a`` with every column of ``B`` (all finite; NaN for constants)."""
    da = a - a.mean()
    dB = B - B.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (da @ dB) / np.sqrt((da @ da) * (dB * dB).sum(axis=0))
    return np.clip(r, -1.0, 1.0)


def _r_pvalue(r: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Two-sided p-value of a correlation coefficient from the t distribution with n - 2 degrees
    of freedom (as scipy.stats.pearsonr and spearmanr)."""
    from scipy.stats import t

    n = np.broadcast_to(np.asarray(n, dtype=np.float64), np.shape(r))
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = np.abs(r) * np.sqrt((n - 2) / np.maximum(1.0 - r * r, 0.0))
    p = 2.0 * t.sf(stat, np.maximum(n - 2, 1))
    return np.where((n >= 3) & np.isfinite(r), np.where(np.abs(r) >= 1.0, 0.0, p), np.nan)


def _correlate_one(a: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Pearson r, Spearman ρ, n) of ``a`` with each column of ``B`` on pairwise-complete rows."""
    from scipy.stats import rankdata

    pearson = np.full(B.shape[1], np.nan)
    spearman = np.full(B.shape[1], np.nan)
    counts = np.zeros(B.shape[1], dtype=int)
    rows = np.isfinite(a)
    complete = np.isfinite(B[rows]).all(axis=0)
    # columns complete where ``a`` is: one vectorised pass; the rest pair by pair
    batches = [(np.flatnonzero(complete), rows)] + [(np.array([j]), rows & np.isfinite(B[:, j]))
                                                    for j in np.flatnonzero(~complete)]
    for cols, mask in batches:
        if not len(cols) or mask.sum() < 3:
            counts[cols] = mask.sum()
            continue
        x, Y = a[mask], B[mask][:, cols]
        pearson[cols] = _pearson(x, Y)
        spearman[cols] = _pearson(rankdata(x), rankdata(Y, axis=0))
        counts[cols] = mask.sum()
    return pearson, spearman, counts


def _fdr(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q) over the finite entries of ``p`` (Benjamini &
    Hochberg, J. R. Stat. Soc. B 57, 289-300, 1995); NaN stays NaN."""
    from scipy.stats import false_discovery_control

    q = np.full(np.shape(p), np.nan)
    finite = np.isfinite(p)
    if finite.any():
        q[finite] = false_discovery_control(p[finite], method="bh")
    return q


_CORRELATION_COLUMNS = ("x", "y", "n", "pearson_r", "pearson_p", "pearson_q", "spearman_rho", "spearman_p",
                        "spearman_q")


def correlation_table(x: pd.DataFrame, y: pd.DataFrame) -> pd.DataFrame:
    """Pearson and Spearman correlation of every column of ``x`` with every column of ``y``.

    Pairwise-complete rows (NaN skipped per pair); p-values two-sided; ``pearson_q`` and
    ``spearman_q`` are Benjamini-Hochberg FDR-adjusted over all pairs of the table (one family
    of tests per method). A constant column gives NaN. Long format: columns ``x``, ``y``, ``n``,
    ``pearson_r``, ``pearson_p``, ``pearson_q``, ``spearman_rho``, ``spearman_p``, ``spearman_q``.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows and y {len(y)}")
    if not len(x.columns) or not len(y.columns):
        return pd.DataFrame(columns=_CORRELATION_COLUMNS)
    Y = y.to_numpy(dtype=np.float64)
    parts = []
    for col in x.columns:
        pearson, spearman, n = _correlate_one(x[col].to_numpy(dtype=np.float64), Y)
        parts.append(pd.DataFrame({"x": str(col), "y": [str(c) for c in y.columns], "n": n,
                                   "pearson_r": pearson, "spearman_rho": spearman}))
    table = pd.concat(parts, ignore_index=True)
    for stat, name in (("pearson_r", "pearson"), ("spearman_rho", "spearman")):
        table[f"{name}_p"] = _r_pvalue(table[stat].to_numpy(), table["n"].to_numpy())
        table[f"{name}_q"] = _fdr(table[f"{name}_p"].to_numpy())
    return table[list(_CORRELATION_COLUMNS)]


def _columns(names: Sequence[str], prefix: str) -> list[str]:
    return [str(c) for c in names if str(c).startswith(prefix)]


def _frame(explanation: Any) -> pd.DataFrame:
    return pd.DataFrame(np.asarray(explanation.data, dtype=np.float64), columns=list(explanation.feature_names))


@dataclass(frozen=True)
class LatentLinks:
    """Latent dimensions that drive each class, and the physical descriptors they track.

    Attributes
    ----------
    drivers : DataFrame
        One row per (class, rank): ``class``, ``rank`` (1 = largest mean |SHAP| among latent
        dimensions for that class), ``latent``, ``mean_abs_shap``, and the strongest significant
        link: ``descriptor``, ``spearman_rho``, ``pearson_r``, ``q`` (Spearman FDR q-value; empty
        when no descriptor passes ``alpha``), ``sentence``.
    correlations : DataFrame
        :func:`correlation_table` of every driver dimension (``x``) with every physical
        descriptor (``y``), FDR over all those pairs.
    """

    drivers: pd.DataFrame
    correlations: pd.DataFrame

    @property
    def sentences(self) -> list[str]:
        return self.drivers["sentence"].tolist()


def latent_drivers(explanation: Any, top: int = 3) -> pd.DataFrame:
    """The ``top`` latent dimensions of each class by mean |SHAP| (``class``, ``rank``,
    ``latent``, ``mean_abs_shap``)."""
    importance = feature_importance(explanation)
    latent = importance.loc[[f for f in importance.index if f.startswith(LATENT_PREFIX)]]
    rows = []
    for cls in importance.columns.drop("total"):
        ranked = latent[cls].sort_values(ascending=False, kind="stable").head(top)
        rows += [{"class": cls, "rank": r, "latent": f, "mean_abs_shap": float(v)}
                 for r, (f, v) in enumerate(ranked.items(), start=1)]
    return pd.DataFrame(rows, columns=["class", "rank", "latent", "mean_abs_shap"])


def _ordinal(rank: int) -> str:
    return "top" if rank == 1 else f"#{rank}"


def latent_physical_links(explanation: Any, top: int = 3, *, table: pd.DataFrame | None = None,
                          alpha: float = 0.05) -> LatentLinks:
    """For the ``top`` latent dimensions driving each class, their correlation with every
    physical descriptor, and one sentence each, e.g. ``latent__0412 (top driver for WSe2)
    tracks grain_density_per_um2 [µm⁻²], ρ=0.71 (Pearson r=0.68, q=2e-05)``.

    ``table`` is the feature table to correlate on (default: the explained images; more images,
    e.g. the training table, give tighter estimates). The link of a dimension is the descriptor
    with the largest |Spearman ρ| among those with FDR q < ``alpha``.
    """
    drivers = latent_drivers(explanation, top)
    data = _frame(explanation) if table is None else table
    physical = _columns(data.columns, PHYS_PREFIX)
    correlations = correlation_table(data[list(dict.fromkeys(drivers["latent"]))], data[physical])
    names = display_names(physical)
    best = {}
    for dim, rows in correlations.groupby("x"):
        significant = rows[rows["spearman_q"] < alpha]
        if len(significant):
            best[dim] = significant.loc[significant["spearman_rho"].abs().idxmax()]
    out = []
    for row in drivers.to_dict("records"):
        link = best.get(row["latent"])
        head = f"{row['latent']} ({_ordinal(row['rank'])} driver for {row['class']})"
        if link is None:
            sentence = f"{head} tracks no physical descriptor (FDR q ≥ {alpha:g})" if physical else \
                f"{head}: no physical descriptors to compare with"
            values = {"descriptor": None, "spearman_rho": np.nan, "pearson_r": np.nan, "q": np.nan}
        else:
            sentence = (f"{head} tracks {names[link['y']]}, ρ={link['spearman_rho']:.2f} "
                        f"(Pearson r={link['pearson_r']:.2f}, q={link['spearman_q']:.1g})")
            values = {"descriptor": link["y"], "spearman_rho": link["spearman_rho"],
                      "pearson_r": link["pearson_r"], "q": link["spearman_q"]}
        out.append({**row, **values, "sentence": sentence})
    columns = ["class", "rank", "latent", "mean_abs_shap", "descriptor", "spearman_rho", "pearson_r", "q", "sentence"]
    return LatentLinks(pd.DataFrame(out, columns=columns), correlations)


@dataclass(frozen=True)
class LatentPCA:
    """Principal components of the latent block and their correlation with descriptors.

    Attributes
    ----------
    scores : DataFrame  images × ``PC1``... (component scores)
    explained_variance_ratio : Series  per component
    correlations : DataFrame  :func:`correlation_table` of components (``x``) vs descriptors (``y``)
    """

    scores: pd.DataFrame
    explained_variance_ratio: pd.Series
    correlations: pd.DataFrame

    def matrix(self, stat: str = "pearson_r") -> pd.DataFrame:
        """Component × descriptor matrix of one column of :attr:`correlations`."""
        return self.correlations.pivot(index="x", columns="y", values=stat).loc[
            list(self.scores.columns), list(dict.fromkeys(self.correlations["y"]))]


def latent_pca_correlation(table: pd.DataFrame, descriptors: Sequence[str] | None = PAPER_FEATURES,
                           n_components: int = 10) -> LatentPCA:
    """The paper's latent analysis: PCA of the embeddings, each component correlated (Pearson as
    in the paper; Spearman too, with FDR) with physical descriptors.

    ``table`` holds ``latent__*`` and ``phys__*`` columns. The latent block is centred, not
    scaled (its dimensions share one scale); missing values are set to the column mean.
    ``descriptors``: columns to correlate with; the default is the paper's grain density, DoG blob
    count and local variation (:data:`PAPER_FEATURES`); those absent from ``table`` are skipped,
    and when none is present (or ``None``) every physical column is used.
    """
    from sklearn.decomposition import PCA

    latent = _columns(table.columns, LATENT_PREFIX)
    if not latent:
        raise ValueError("the table has no latent__ columns to decompose")
    chosen = [c for c in (descriptors or ()) if c in table.columns] or _columns(table.columns, PHYS_PREFIX)
    if not chosen:
        raise ValueError("the table has no phys__ columns to correlate the components with")
    block = np.array(table[latent], dtype=np.float64)  # a copy: missing values are filled in place
    block[~np.isfinite(block)] = np.nan
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column: its mean is NaN, then 0
        means = np.nan_to_num(np.nanmean(block, axis=0))
    block = np.where(np.isnan(block), means, block)
    k = max(1, min(n_components, len(block) - 1, len(latent)))
    pca = PCA(n_components=k, svd_solver="full").fit(block)
    names = [f"PC{i + 1}" for i in range(k)]
    scores = pd.DataFrame(pca.transform(block), columns=names, index=table.index)
    ratio = pd.Series(pca.explained_variance_ratio_, index=names, name="explained_variance_ratio")
    return LatentPCA(scores, ratio, correlation_table(scores, table[chosen]))


# ---- figures ----------------------------------------------------------------------------------


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def plot_beeswarm(explanation: Any, class_: int | str | None = None, max_display: int = 15) -> Any:
    """shap's beeswarm of one class: each dot an image, x its SHAP value (margin, log-odds),
    colour the feature's value. Returns the Figure."""
    import shap

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.35 * max_display + 1.5))
    sliced = with_display_names(class_explanation(explanation, class_))
    shap.plots.beeswarm(sliced, max_display=max_display, ax=ax, show=False, plot_size=None)
    ax.set_title(f"SHAP per image: {_class_name(explanation, class_)}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_waterfall(explanation: Any, index: int, class_: int | str | None = None, max_display: int = 12) -> Any:
    """shap's waterfall of one image and class (default: its predicted class): how each feature
    moves the margin from the base value to the model's output. Returns the Figure."""
    import shap

    plt = _pyplot()
    k = int(predicted_class_index(explanation)[index]) if class_ is None else _class_index(explanation, class_)
    if np.ndim(explanation.values) == 2:
        k = 0  # one margin: the waterfall of the positive class
    plt.figure()
    shap.plots.waterfall(with_display_names(class_explanation(explanation, k))[index], max_display=max_display,
                         show=False)
    fig = plt.gcf()
    fig.suptitle(f"image {index}: margin of {_class_name(explanation, k)}", fontsize=10)
    return fig


def _class_name(explanation: Any, class_: int | str | None) -> str:
    return _per_class(explanation)[2][_class_index(explanation, class_)]


def plot_top_features(explanation: Any, max_display: int = 20, ax: Any = None) -> Any:
    """Bar of the ``max_display`` most important features: mean |SHAP| stacked by class (names
    with units). Returns the Figure."""
    plt = _pyplot()
    importance = feature_importance(explanation).head(max_display).iloc[::-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.3 * len(importance) + 1.5))
    names = display_names(list(importance.index))
    left = np.zeros(len(importance))
    for cls in importance.columns.drop("total"):
        ax.barh([names[f] for f in importance.index], importance[cls], left=left, label=cls)
        left += importance[cls].to_numpy()
    ax.set_xlabel("mean |SHAP| (margin, log-odds)")
    ax.legend(fontsize=8, loc="lower right")
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title("Most important features", fontsize=10)
    ax.figure.tight_layout()
    return ax.figure


def plot_group_attribution(groups: GroupAttribution, ax: Any = None) -> Any:
    """Mean |SHAP| of each feature group (summed over its features) per class, with the latent
    share of each class in the legend. Returns the Figure."""
    plt = _pyplot()
    table = groups.global_abs
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.5 * len(table) * max(1, len(table.columns)) ** 0.5 + 1.5))
    height = 0.8 / len(table.columns)
    y = np.arange(len(table))
    for j, cls in enumerate(table.columns):
        latent = groups.share.loc[cls].get(LATENT_GROUP, 0.0)
        ax.barh(y + j * height, table[cls], height=height, label=f"{cls} (latent share {latent:.0%})")
    ax.set_yticks(y + 0.4 - height / 2, table.index)
    ax.invert_yaxis()
    ax.set_xlabel("mean over images of Σ|SHAP| in the group (log-odds)")
    ax.legend(fontsize=8)
    ax.set_title("Attribution by feature group: physical families vs CNN latent", fontsize=10)
    ax.figure.tight_layout()
    return ax.figure


def plot_correlation_heatmap(matrix: pd.DataFrame, q: pd.DataFrame | None = None, *, alpha: float = 0.05,
                             title: str = "", label: str = "correlation", ax: Any = None) -> Any:
    """Heatmap of a correlation matrix (rows × columns, in [-1, 1]); cells with FDR q < ``alpha``
    are starred. Column names get units. Returns the Figure."""
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(1.0 + 0.45 * matrix.shape[1] + 2, 0.4 * matrix.shape[0] + 2.8))
    image = ax.imshow(matrix.to_numpy(dtype=np.float64), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    names = display_names([str(c) for c in matrix.columns])
    ax.set_xticks(range(matrix.shape[1]), [names[str(c)] for c in matrix.columns], rotation=60, ha="right",
                  fontsize=7)
    ax.set_yticks(range(matrix.shape[0]), [str(r) for r in matrix.index], fontsize=7)
    starred = np.zeros(matrix.shape, dtype=bool) if q is None else (
        q.reindex_like(matrix).to_numpy(dtype=np.float64) < alpha)
    if matrix.size <= 300:  # values readable in the cells
        for (i, j), value in np.ndenumerate(matrix.to_numpy(dtype=np.float64)):
            ax.text(j, i, f"{value:.2f}{'*' if starred[i, j] else ''}", ha="center", va="center", fontsize=6,
                    color="white" if abs(value) > 0.6 else "black")
    ax.figure.colorbar(image, ax=ax, label=label, fraction=0.04)
    ax.set_title(title + (f" (* FDR q < {alpha:g})" if q is not None else ""), fontsize=9)
    ax.figure.tight_layout()
    return ax.figure


def plot_pca_scatter(pca: LatentPCA, labels: Sequence[str], components: tuple[int, int] = (0, 1),
                     ax: Any = None) -> Any:
    """Images in the plane of two principal components of the latent block, coloured by class.
    Returns the Figure."""
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5))
    labels = np.asarray([str(v) for v in labels])
    if len(pca.scores.columns) < 2:
        components = (0, 0)
    cx, cy = (pca.scores.columns[c] for c in components)
    for cls in dict.fromkeys(labels):
        rows = labels == cls
        ax.scatter(pca.scores.loc[rows, cx], pca.scores.loc[rows, cy], s=14, alpha=0.8, label=cls)
    ratio = pca.explained_variance_ratio
    ax.set_xlabel(f"{cx} ({ratio[cx]:.0%} of latent variance)")
    ax.set_ylabel(f"{cy} ({ratio[cy]:.0%})")
    ax.legend(fontsize=8)
    ax.set_title("CNN embeddings, principal components", fontsize=10)
    ax.figure.tight_layout()
    return ax.figure


def _format_value(value: float, unit: str) -> str:
    text = "NaN" if not np.isfinite(value) else f"{value:.3g}"
    return f"{text} {unit}".strip()


def plot_image_explanation(image: AFMImage, explanation: Any, index: int, class_: int | str | None = None,
                           max_display: int = 10) -> Any:
    """The height map (nm colour bar, scale bar) beside the features that moved its margin most
    for ``class_`` (default: its predicted class), each with its value and unit. A binary
    explanation has one margin: the bars are the log-odds of the positive class whichever class
    the image is (blue bars push towards the other class). Returns the Figure."""
    from .plotting import plot_height_map

    plt = _pyplot()
    k = int(predicted_class_index(explanation)[index]) if class_ is None else _class_index(explanation, class_)
    values, base, classes = _per_class(explanation)
    k = min(k, values.shape[2] - 1)
    contributions = values[index, :, k]
    order = np.argsort(-np.abs(contributions), kind="stable")[:max_display][::-1]
    features = list(explanation.feature_names)
    units = feature_units([features[j] for j in order])
    names = display_names([features[j] for j in order])
    labels = [f"{names[features[j]].split(' [')[0]} = "
              f"{_format_value(float(explanation.data[index, j]), format_unit(units[features[j]]))}" for j in order]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=(1, 1.3))
    plot_height_map(image, ax=left)
    right.barh(labels, contributions[order], color=np.where(contributions[order] > 0, "#d62728", "#1f77b4"))
    right.axvline(0, color="black", lw=0.6)
    right.tick_params(axis="y", labelsize=8)
    margin = contributions.sum() + base[index, k]
    right.set_xlabel(f"SHAP (log-odds of {classes[k]})")
    right.set_title(f"{classes[k]}: margin {margin:+.2f} = base {base[index, k]:+.2f} + Σ SHAP", fontsize=9)
    fig.tight_layout()
    return fig


# ---- report -----------------------------------------------------------------------------------


def _save_png(fig: Any, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight")  # shap's long labels overflow the axes
    _pyplot().close(fig)
    return path


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def _probabilities(explanation: Any, temperature: float | None) -> np.ndarray:
    """Class probabilities from the explained margins (softmax; binary: sigmoid), temperature
    scaled like :meth:`HybridClassifier.predict_proba`."""
    from scipy.special import expit, softmax

    m = margins(explanation) / (temperature or 1.0)
    if np.ndim(explanation.values) == 2:
        p = expit(m[:, 0])
        return np.column_stack([1.0 - p, p])
    return softmax(m, axis=1)


def _level_for_display(model: HybridClassifier, image: AFMImage) -> AFMImage:
    """The image as the model's features see it (levelled when the model levels)."""
    from .preprocess import level

    features = model.features_
    return level(image, features.level_config) if features is not None and features.level else image


def write_report(model: HybridClassifier, X: Any, output: str | Path, *, labels: Sequence[str] | None = None,
                 names: Sequence[str] | None = None, max_images: int = 3, top_latent: int = 3,
                 title: str = "Why the model decided") -> Path:
    """Explain ``model`` on ``X`` (images or a feature table) and write a report to ``output``.

    Writes the figures as PNG files (beeswarm per class, top features, group attribution,
    waterfall and image + explanation for the first ``max_images`` images, latent-driver ↔
    descriptor heatmap, PCA ↔ paper-features heatmap and PCA scatter when the model has latent
    features), ``predictions.csv``, ``feature_importance.csv``, ``group_attribution.csv``,
    ``latent_links.csv``, and ``report.html``: one self-contained page (every PNG embedded as
    base64) that opens anywhere. ``labels`` (true classes, optional) colour the PCA scatter and
    appear beside the predictions. Returns the path of ``report.html``.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    images = list(X) if is_image_sequence(X) else []
    explanation = explain(model, X)
    n = len(explanation.values)
    names = list(names) if names is not None else ([im.name for im in images] or [str(i) for i in range(n)])
    _, _, classes = _per_class(explanation)
    proba = _probabilities(explanation, model.temperature_)
    predicted = model.classes_[proba.argmax(axis=1)].astype(str)
    predictions = pd.DataFrame({"image": names, "predicted": predicted, "confidence": proba.max(axis=1)})
    if labels is not None:
        predictions.insert(1, "label", [str(v) for v in labels])
    importance = feature_importance(explanation)
    grouped = group_attributions(explanation, model.feature_groups_)
    figures: list[tuple[str, str, Path]] = []  # (section title, caption, file)

    def add(fig: Any, file: str, section: str, caption: str) -> None:
        figures.append((section, caption, _save_png(fig, output / file)))

    add(plot_group_attribution(grouped), "group_attribution.png", "Physical vs latent",
        "Mean Σ|SHAP| of each feature group per class; the legend gives the latent share.")
    add(plot_top_features(explanation), "top_features.png", "Most important features",
        "Mean |SHAP| over the explained images, stacked by class.")
    for k, cls in enumerate(classes):
        add(plot_beeswarm(explanation, k), f"beeswarm_{_slug(cls)}.png", f"Per-image SHAP: {cls}",
            "Each dot is an image; right of zero pushes towards this class; colour = feature value.")
    for i in range(min(max_images, n)):
        if images:
            add(plot_image_explanation(_level_for_display(model, images[i]), explanation, i),
                f"image_{i:03d}.png", f"Image {names[i]}", "The height map and the features that moved its "
                "predicted class most (red: towards, blue: against).")
        add(plot_waterfall(explanation, i), f"waterfall_{i:03d}.png", f"Waterfall {names[i]}",
            "From the base value (average margin) to this image's margin, feature by feature.")
    links = latent_physical_links(explanation, top=top_latent)
    table = _frame(explanation)
    physical = _columns(table.columns, PHYS_PREFIX)
    if len(links.drivers) and physical and n >= 3:
        corr = links.correlations
        strongest = corr.groupby("y")["spearman_rho"].apply(lambda s: s.abs().max()).sort_values(ascending=False)
        shown = list(strongest.head(15).index)
        rho = corr.pivot(index="x", columns="y", values="spearman_rho").loc[:, shown]
        q = corr.pivot(index="x", columns="y", values="spearman_q").loc[:, shown]
        add(plot_correlation_heatmap(rho, q, title="Latent drivers vs physical descriptors", label="Spearman ρ"),
            "latent_descriptor_heatmap.png", "Latent dimensions made physical",
            "Spearman ρ of the latent dimensions with the largest SHAP vs the descriptors they track most.")
    if _columns(table.columns, LATENT_PREFIX) and physical and n >= 3:
        pca = latent_pca_correlation(table)
        add(plot_correlation_heatmap(pca.matrix("pearson_r"), pca.matrix("pearson_q"), label="Pearson r",
                                     title="PCA of embeddings vs the paper's features"),
            "pca_paper_heatmap.png", "The paper's analysis",
            "Pearson r of the principal components of the CNN embeddings with the paper's grain density, "
            "DoG blob count and local variation.")
        colour = "class" if labels is not None else "predicted class"
        add(plot_pca_scatter(pca, labels if labels is not None else predicted), "pca_scatter.png",
            "Embedding space", f"First two principal components of the CNN embeddings, coloured by {colour}.")
    for frame, file in ((predictions, "predictions.csv"), (importance, "feature_importance.csv"),
                        (grouped.per_image, "group_attribution.csv"), (links.drivers, "latent_links.csv")):
        atomic_write_csv(frame, output / file, index=file == "feature_importance.csv")
    page = _html(title, model, explanation, predictions, importance, grouped, links, figures)
    atomic_write_text(output / "report.html", page)
    return output / "report.html"


def _html(title: str, model: HybridClassifier, explanation: Any, predictions: pd.DataFrame,
          importance: pd.DataFrame, grouped: GroupAttribution, links: LatentLinks,
          figures: list[tuple[str, str, Path]]) -> str:
    esc = html.escape
    n, n_features = np.shape(explanation.values)[:2]
    groups = ", ".join(f"{g} {len(c)}" for g, c in model.feature_groups_.items())
    calibration = f"temperature T = {model.temperature_:.3g}" if model.temperature_ else "none"
    top = importance.head(15).copy()
    top.index = [display_names(list(top.index))[f] for f in top.index]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>", f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em;color:#222}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
        "img{max-width:100%;border:1px solid #eee}figure{margin:1em 0}figcaption{font-size:13px;color:#555}"
        "</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>{n} image(s) explained; {n_features} features ({esc(groups)}); classes "
        f"{esc(', '.join(map(str, model.classes_)))}; calibration: {esc(calibration)}.</p>",
        "<p>SHAP values are exact TreeSHAP (Lundberg et al., 2020) of the XGBoost head, in units of its raw "
        "margin (log-odds): for every image and class, the base value plus the SHAP values of all features "
        "equals the margin. Temperature scaling divides margins by T, so the calibrated logits' SHAP values "
        "are these divided by T. Correlations are FDR-controlled (Benjamini &amp; Hochberg, 1995).</p>",
        "<h2>Predictions</h2>", predictions.round(3).to_html(index=False, border=0),
        "<h2>Share of attribution: physical vs latent</h2>", grouped.share.round(3).to_html(border=0),
        "<h2>Top features (mean |SHAP|)</h2>", top.round(4).to_html(border=0),
        "<h2>Latent dimensions in physical terms</h2><ul>",
        *[f"<li>{esc(s)}</li>" for s in links.sentences], "</ul>",
    ]
    for section, caption, path in figures:
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f"<h2>{esc(section)}</h2><figure><img alt='{esc(path.name)}' "
                     f"src='data:image/png;base64,{encoded}'><figcaption>{esc(path.name)}: {esc(caption)}"
                     "</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


__all__ = [
    "PAPER_FEATURES",
    "GroupAttribution",
    "LatentLinks",
    "LatentPCA",
    "block_of",
    "class_explanation",
    "correlation_table",
    "display_names",
    "explain",
    "feature_importance",
    "format_unit",
    "group_attributions",
    "latent_drivers",
    "latent_pca_correlation",
    "latent_physical_links",
    "margins",
    "plot_beeswarm",
    "plot_correlation_heatmap",
    "plot_group_attribution",
    "plot_image_explanation",
    "plot_pca_scatter",
    "plot_top_features",
    "plot_waterfall",
    "predicted_class_index",
    "with_display_names",
    "write_report",
]

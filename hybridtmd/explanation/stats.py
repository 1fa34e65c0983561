"""Correlation statistics that put the latent dimensions in physical terms.

:func:`latent_physical_links` correlates the latent dimensions that drive each class with every
physical descriptor (Pearson and Spearman, Benjamini-Hochberg FDR) and words the strongest link
("latent__0412 (top driver for WSe2) tracks grain_density_per_um2, ρ=0.71").
:func:`latent_pca_correlation` reproduces the paper's analysis (Moses & Reinhart, Mach. Learn.:
Sci. Technol. 5 045081, 2025; their ``codes/utils_analysis.py``: Pearson correlation of embedding
features with the grain density, the DoG blob count and the local variation) on the principal
components of the latent block. :func:`latent_label` words a latent column with its strongest
correlate from :func:`hybridtmd.model.latent_correlates` (the table a model computes at fit and
stores as ``latent_links_``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..model import LATENT_PREFIX, PHYS_PREFIX
from ..model.links import benjamini_hochberg, columns_with_prefix, correlation_matrices
from .attributions import feature_frame
from .groups import feature_importance
from .names import display_names, format_unit

#: The paper's three image properties correlated with the embeddings, as descriptor columns: its
#: "grain density" (regions of the opened Otsu mask per pixel, see the registry definition), the
#: DoG blob count and the normalised local variation.
PAPER_FEATURES: tuple[str, ...] = (
    PHYS_PREFIX + "paper_domain_density_per_px",
    PHYS_PREFIX + "paper_dog_blob_count",
    PHYS_PREFIX + "paper_local_variation",
)

_CORRELATION_COLUMNS = ("x", "y", "n", "pearson_r", "pearson_p", "pearson_q", "spearman_rho", "spearman_p",
                        "spearman_q")


def correlation_table(x: pd.DataFrame, y: pd.DataFrame) -> pd.DataFrame:
    """Pearson and Spearman correlation of every column of ``x`` with every column of ``y``.

    :func:`hybridtmd.model.links.correlation_matrices` (the one correlation routine, which the
    model's ``latent_links_`` use too) in long format: pairwise-complete rows (NaN skipped per
    pair); p-values two-sided; ``pearson_q`` and
    ``spearman_q`` are Benjamini-Hochberg FDR-adjusted over all pairs of the table (one family
    of tests per method). A constant column gives NaN. Long format: columns ``x``, ``y``, ``n``,
    ``pearson_r``, ``pearson_p``, ``pearson_q``, ``spearman_rho``, ``spearman_p``, ``spearman_q``.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows and y {len(y)}")
    if not len(x.columns) or not len(y.columns):
        return pd.DataFrame(columns=_CORRELATION_COLUMNS)
    stats = correlation_matrices(x.to_numpy(dtype=np.float64), y.to_numpy(dtype=np.float64))
    table = pd.DataFrame({"x": np.repeat([str(c) for c in x.columns], len(y.columns)),
                          "y": np.tile([str(c) for c in y.columns], len(x.columns)),
                          **{name: values.ravel() for name, values in stats.items()}})
    for name in ("pearson", "spearman"):
        table[f"{name}_q"] = benjamini_hochberg(table[f"{name}_p"].to_numpy())
    return table[list(_CORRELATION_COLUMNS)]


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
        """The ``sentence`` of every driver, in table order."""
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
    data = feature_frame(explanation) if table is None else table
    physical = columns_with_prefix(data.columns, PHYS_PREFIX)
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

    latent = columns_with_prefix(table.columns, LATENT_PREFIX)
    if not latent:
        raise ValueError("the table has no latent__ columns to decompose")
    chosen = ([c for c in (descriptors or ()) if c in table.columns]
              or columns_with_prefix(table.columns, PHYS_PREFIX))
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


def latent_label(name: str, correlates: pd.DataFrame | None) -> str:
    """``latent__0396 (~ grain_density_per_um2 [µm⁻²], ρ = 0.71)``: a latent column with its
    strongest physical correlate from :func:`latent_correlates` (its stored ``unit`` when the
    table has one, else the registry's); ``(no physical correlate)`` when none is significant;
    other columns (and a missing table) unchanged."""
    if correlates is None or not name.startswith(LATENT_PREFIX):
        return name
    rows = correlates[correlates["latent"] == name]
    if not len(rows) or rows["descriptor"].iloc[0] is None or pd.isna(rows["descriptor"].iloc[0]):
        return f"{name} (no physical correlate)"
    row = rows.iloc[0]
    descriptor = str(row["descriptor"])
    if isinstance(row.get("unit"), str):  # stored with the links (a model's latent_links_)
        unit = format_unit(row["unit"])
        shown = descriptor[len(PHYS_PREFIX):] + (f" [{unit}]" if unit else "")
    else:
        shown = display_names([descriptor])[descriptor]
    return f"{name} (~ {shown}, ρ = {row['spearman_rho']:.2f})"

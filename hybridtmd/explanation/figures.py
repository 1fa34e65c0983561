"""Figures of an explanation (matplotlib; each function returns a ``Figure``).

shap's beeswarm and waterfall of one class, the most important features, the attribution of each
feature group, a correlation heatmap, the latent PCA scatter, and one height map beside the
features that moved its prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..model import feature_units
from ..model.columns import LATENT_GROUP
from .attributions import class_explanation, class_index, class_name, per_class, predicted_class_index
from .groups import feature_importance
from .names import display_names, format_unit, with_display_names

if TYPE_CHECKING:
    import pandas as pd

    from ..io import AFMImage
    from .groups import GroupAttribution
    from .stats import LatentPCA


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def _shown_class(explanation: Any, index: int, class_: int | str | None) -> int:
    """Output index of ``class_``, or of image ``index``'s predicted class when ``class_`` is None."""
    return int(predicted_class_index(explanation)[index]) if class_ is None else class_index(explanation, class_)


def plot_beeswarm(explanation: Any, class_: int | str | None = None, max_display: int = 15) -> Any:
    """shap's beeswarm of one class: each dot an image, x its SHAP value (margin, log-odds),
    colour the feature's value. Returns the Figure."""
    import shap

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.35 * max_display + 1.5))
    sliced = with_display_names(class_explanation(explanation, class_))
    shap.plots.beeswarm(sliced, max_display=max_display, ax=ax, show=False, plot_size=None)
    ax.set_title(f"SHAP per image: {class_name(explanation, class_)}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_waterfall(explanation: Any, index: int, class_: int | str | None = None, max_display: int = 12) -> Any:
    """shap's waterfall of one image and class (default: its predicted class): how each feature
    moves the margin from the base value to the model's output. Returns the Figure."""
    import shap

    plt = _pyplot()
    k = _shown_class(explanation, index, class_)
    if np.ndim(explanation.values) == 2:
        k = 0  # one margin: the waterfall of the positive class
    plt.figure()
    shap.plots.waterfall(with_display_names(class_explanation(explanation, k))[index], max_display=max_display,
                         show=False)
    fig = plt.gcf()
    fig.suptitle(f"image {index}: margin of {class_name(explanation, k)}", fontsize=10)
    return fig


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
    from ..io.figures import plot_height_map

    plt = _pyplot()
    k = _shown_class(explanation, index, class_)
    values, base, classes = per_class(explanation)
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


def group_shares(groups: Any) -> pd.DataFrame:
    """Class (rows) × group (columns): each group's share of the mean |attribution| of the class's
    output over the explained images (rows sum to 1). ``groups`` is a group-level Explanation."""
    import pandas as pd

    values, _, classes = per_class(groups)
    mean_abs = np.abs(values).mean(axis=0).T  # (k, g)
    totals = mean_abs.sum(axis=1, keepdims=True)
    shares = np.divide(mean_abs, totals, out=np.zeros_like(mean_abs), where=totals > 0)
    return pd.DataFrame(shares, index=pd.Index(classes, name="class"), columns=list(groups.feature_names))


def plot_group_shares(shares: pd.DataFrame, title: str, ax: Any = None) -> Any:
    """Stacked bars: for each class, the share of attribution of every feature group (the latent
    block hatched), so "physical vs latent" reads off at a glance. Returns the Figure."""
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 0.45 * len(shares) + 1.8))
    left = np.zeros(len(shares))
    colours = plt.get_cmap("tab10")
    for j, group in enumerate(shares.columns):
        ax.barh(list(shares.index), shares[group], left=left, label=group, color=colours(j % 10),
                hatch="//" if group == LATENT_GROUP else "", edgecolor="white")
        left += shares[group].to_numpy()
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("share of mean |attribution|")
    ax.legend(fontsize=7, ncol=min(4, len(shares.columns)), loc="upper center", bbox_to_anchor=(0.5, -0.25))
    ax.set_title(title, fontsize=9)
    ax.figure.tight_layout()
    return ax.figure


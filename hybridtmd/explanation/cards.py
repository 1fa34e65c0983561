"""Figures of one explained image (matplotlib; each function returns a ``Figure``): where its
top latent dimensions fire, the group waterfall, the drill-down into the features of each
group, and the nearest training examples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .attributions import per_class
from .groups import member_positions
from .names import display_names
from .stats import latent_label

if TYPE_CHECKING:
    from ..embeddings import LatentMaps
    from ..io import AFMImage


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def plot_latent_overlays(maps: LatentMaps, labels: Sequence[str], title: str = "") -> Any:
    """The height map (nm colour bar, scale bar) and, beside it, each latent map laid over it
    (colour = the dimension's activation, transparent where low; smoothed for display only).
    ``labels`` name the maps (with their physical correlates)."""
    from ..io.figures import plot_height_map

    plt = _pyplot()
    n = len(maps.names)
    fig, axes = plt.subplots(1, n + 1, figsize=(3.1 * (n + 1), 3.2), squeeze=False)
    axes = axes[0]
    plot_height_map(maps.image, ax=axes[0], title=title or maps.image.name)
    width, height = maps.image.size_nm
    for ax, values, label in zip(axes[1:], maps.maps, labels, strict=True):
        plot_height_map(maps.image, ax=ax, cmap="gray", colorbar=False, title="")
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if hi - lo <= 1e-6 * max(abs(hi), 1.0):  # a ReLU channel silent on this image: nothing to locate
            ax.set_title(_wrap(f"{label}: {hi:.3g} everywhere"), fontsize=7)
            continue
        shown = ax.imshow(values, cmap="inferno", alpha=0.55, vmin=lo, vmax=hi, extent=(0, width, height, 0),
                          interpolation="bilinear")
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03).set_label("activation", fontsize=7)
        ax.set_title(_wrap(label), fontsize=7)
    fig.tight_layout()
    return fig


def plot_height(image: AFMImage) -> Any:
    """The height map alone (nm colour bar, scale bar), for a card without latent maps."""
    from ..io.figures import plot_height_map

    fig, ax = _pyplot().subplots(figsize=(3.6, 3.2))
    plot_height_map(image, ax=ax)
    fig.tight_layout()
    return fig


def _wrap(text: str, width: int = 38) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def plot_group_waterfall(groups: Any, index: int, k: int, unit: str) -> Any:
    """shap's waterfall of the feature groups of image ``index``, output ``k``: from the base
    value to the model's output, one bar per descriptor family and the latent block (no "other
    features" bar: there are few groups)."""
    import shap

    plt = _pyplot()
    values, base, classes = per_class(groups)
    k = min(k, values.shape[2] - 1)
    single = shap.Explanation(values=values[index, :, k], base_values=float(base[index, k]),
                              feature_names=list(groups.feature_names))
    plt.figure()
    shap.plots.waterfall(single, max_display=len(single.values) + 1, show=False)
    fig = plt.gcf()
    fig.set_size_inches(6.4, 0.42 * len(single.values) + 1.6)
    fig.suptitle(f"by feature group: {classes[k]} ({unit})", fontsize=9)
    return fig


def drill_down(features: Any, index: int, k: int, groups: Mapping[str, Sequence[str]],
               correlates: pd.DataFrame | None, per_group: int = 3) -> pd.DataFrame:
    """The top ``per_group`` features of every group of image ``index`` for output ``k``, plus
    one ``N other <group> features`` row with the rest of the group, so the rows sum to the
    group totals. Columns ``group``, ``label`` (names with units, latent names with their
    correlate), ``shap``, ``group_total``."""
    values, _, _ = per_class(features)
    k = min(k, values.shape[2] - 1)
    names = [str(f) for f in features.feature_names]
    shown = display_names(names)
    rows = []
    for group, positions in member_positions(names, groups).items():
        contributions = values[index, positions, k]
        order = np.argsort(-np.abs(contributions), kind="stable")
        total = float(contributions.sum())
        for j in order[:per_group]:
            name = names[positions[j]]
            label = latent_label(name, correlates) if name.startswith("latent__") else shown[name]
            rows.append({"group": group, "label": label, "shap": float(contributions[j]), "group_total": total})
        if len(order) > per_group:
            rows.append({"group": group, "label": f"{len(order) - per_group} other {group} features",
                         "shap": float(contributions[order[per_group:]].sum()), "group_total": total})
    table = pd.DataFrame(rows, columns=["group", "label", "shap", "group_total"])
    table = table[table["shap"] != 0]  # features the trees never split on for this image say nothing
    rank = table.groupby("group")["group_total"].first().abs().sort_values(ascending=False)
    return table.assign(_r=table["group"].map({g: i for i, g in enumerate(rank.index)})).sort_values(
        "_r", kind="stable").drop(columns="_r").reset_index(drop=True)


def plot_drill_down(table: pd.DataFrame, title: str) -> Any:
    """Bars of :func:`drill_down`: groups in order of their total |SHAP|, each with its top
    features and the remainder (hatched)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.26 * len(table) + 1.3))
    y = np.arange(len(table))[::-1]
    rest = table["label"].str.contains(" other ")
    colours = np.where(table["shap"] > 0, "#d62728", "#1f77b4")
    ax.barh(y, table["shap"], color=colours, hatch=["//" if r else "" for r in rest], edgecolor="white")
    ax.set_yticks(y, [f"{g} · {lab}" for g, lab in zip(table["group"], table["label"], strict=True)], fontsize=7)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlabel("SHAP (margin, log-odds)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_nearest(evidence: pd.DataFrame, images: Sequence[AFMImage], labels: Sequence[str]) -> Any:
    """Thumbnails of the nearest training images: the predicted class on the first row, the
    runner-up on the second, each titled with its class, sample id and distance."""
    plt = _pyplot()
    roles = [r for r in ("predicted", "runner-up") if (evidence["role"] == r).any()]
    columns = int(evidence.groupby("role").size().max()) if len(evidence) else 1
    fig, axes = plt.subplots(len(roles) or 1, columns, figsize=(2.1 * columns, 2.6 * max(len(roles), 1)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, role in enumerate(roles):
        for c, row in enumerate(evidence[evidence["role"] == role].itertuples()):
            image = images[row.train_index]
            h = image.height
            lo, hi = np.percentile(h, [1, 99])
            axes[r, c].imshow(h, cmap="afmhot", vmin=lo, vmax=max(hi, lo + 1e-12), interpolation="nearest")
            axes[r, c].set_title(f"{labels[row.train_index]} · sample {row.train_sample}\n"
                                 f"{role}, d = {row.distance:.2f}", fontsize=7)
    fig.suptitle("Looks most like these training images (standardised feature space)", fontsize=8)
    fig.tight_layout()
    return fig

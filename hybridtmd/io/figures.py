"""Figures of height maps: one image with its nm colourbar and scale bar, a per-class gallery.

Figures only: the images arrive loaded and levelled (:mod:`hybridtmd.io`, :mod:`hybridtmd.preprocess`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._utils.files import save_figure

if TYPE_CHECKING:

    from .image import AFMImage


def _nice_length(target: float) -> float:
    """Round ``target`` down to 1, 2 or 5 times a power of ten (scale-bar lengths)."""
    exponent = np.floor(np.log10(target))
    for m in (5, 2, 1):
        if m * 10**exponent <= target:
            return float(m * 10**exponent)
    return float(10**exponent)


def plot_height_map(
    image: AFMImage,
    ax=None,
    *,
    cmap: str = "afmhot",
    scale_bar_nm: float | None = None,
    colorbar: bool = True,
    title: str | None = None,
    robust: bool = True,
):
    """Draw ``image`` on ``ax`` in physical coordinates with a colourbar (nm) and scale bar.

    Returns the matplotlib ``AxesImage``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 3.6))
    h = image.height
    vmin, vmax = np.percentile(h, [1, 99]) if robust else (h.min(), h.max())
    if vmax <= vmin:
        vmin, vmax = h.min(), h.max() + 1e-12
    width, height = image.size_nm
    im = ax.imshow(h, cmap=cmap, vmin=vmin, vmax=vmax, extent=(0, width, height, 0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    bar = scale_bar_nm or _nice_length(width / 5)
    label = f"{bar / 1000:g} µm" if bar >= 1000 else f"{bar:g} nm"
    x0, y0 = 0.05 * width, 0.92 * height
    ax.add_patch(Rectangle((x0, y0), bar, 0.02 * height, color="white", ec="black", lw=0.5))
    ax.text(x0 + bar / 2, y0 - 0.02 * height, label, color="white", ha="center", va="bottom", fontsize=8,
            fontweight="bold")
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        cb.set_label("height (nm)")
    ax.set_title(title if title is not None else image.name, fontsize=8)
    return im


def plot_gallery(
    images: Sequence[AFMImage],
    labels: Sequence[str],
    *,
    per_class: int = 4,
    classes: Sequence[str] | None = None,
    cmap: str = "afmhot",
):
    """A grid with one row per class and up to ``per_class`` example height maps in each.

    Returns the matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    labels = list(labels)
    classes = list(classes) if classes is not None else sorted(set(labels))
    fig, axes = plt.subplots(len(classes), per_class, figsize=(3.0 * per_class, 2.7 * len(classes)),
                             squeeze=False, layout="constrained")
    for row, cls in enumerate(classes):
        members = [im for im, lab in zip(images, labels, strict=True) if lab == cls][:per_class]
        for col in range(per_class):
            ax = axes[row, col]
            if col < len(members):
                plot_height_map(members[col], ax=ax, cmap=cmap, title=members[col].name)
            else:
                ax.axis("off")
        axes[row, 0].set_ylabel(cls, fontsize=12, fontweight="bold")
        axes[row, 0].yaxis.set_visible(True)
    return fig


def save_class_gallery(
    images: Sequence[AFMImage],
    labels: Sequence[str],
    output: str | Path,
    *,
    per_class: int = 4,
    classes: Sequence[str] | None = None,
    cmap: str = "afmhot",
) -> Path:
    """Save :func:`plot_gallery` of ``images`` as a PNG at ``output`` (atomically); returns the path."""
    fig = plot_gallery(images, labels, per_class=per_class, classes=classes, cmap=cmap)
    return save_figure(fig, output, dpi=110)


__all__ = ["plot_gallery", "plot_height_map", "save_class_gallery"]

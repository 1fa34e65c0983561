"""Every latent dimension a report's figure names gets a map overlay and its physical correlate.

The report reads the text a figure actually draws (tick labels, titles, legends) with
:func:`latent_names_in`, so a latent name is found wherever it appears (a beeswarm's rows, a
drill-down's bars, a map's title), whoever drew it. A dimension no card has mapped is mapped by
:func:`exemplar_overlays` on its **exemplar**: the explained image with the largest value of
that dimension, i.e. the image that makes it fire most (the "dataset examples" of feature
visualisation; Olah, Mordvintsev & Schubert, Distill 2017), with its physical correlate in the
title (:func:`~hybridtmd.explanation.stats.latent_label`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .cards import plot_latent_overlays
from .stats import latent_label

#: a latent column's name in a figure's text (``latent__0396``, ``latent__pca_03``)
LATENT_NAME = re.compile(r"(?<![A-Za-z0-9_])latent__[A-Za-z0-9_]+")
#: what follows a name that carries its correlate (:func:`latent_label`)
_CORRELATE = re.compile(r"\s*\((~ |no physical correlate\))")
#: maps drawn beside one height map in an exemplar figure
MAPS_PER_FIGURE = 4


def latent_names_in(fig: Any) -> dict[str, bool]:
    """Each latent column name drawn anywhere in ``fig`` (any text artist), and whether every
    occurrence carries its physical correlate (``name (~ descriptor ...`` or ``name (no
    physical correlate)``)."""
    from matplotlib.text import Text

    found: dict[str, bool] = {}
    for artist in fig.findobj(Text):
        text = " ".join(artist.get_text().split())  # wrapped labels read as one line
        for match in LATENT_NAME.finditer(text):
            carries = bool(_CORRELATE.match(text, match.end()))
            found[match.group()] = found.get(match.group(), True) and carries
    return found


def exemplars(table: pd.DataFrame, dims: Sequence[str]) -> dict[int, list[str]]:
    """Image index → the dimensions it is the exemplar of (largest value; first image on ties),
    images in order of their first dimension."""
    out: dict[int, list[str]] = {}
    for dim in dims:
        values = table[dim].to_numpy(dtype=np.float64)
        best = int(np.nanargmax(values)) if np.isfinite(values).any() else 0
        out.setdefault(best, []).append(dim)
    return out


def exemplar_overlays(features: Any, images: Sequence[Any], names: Sequence[str], table: pd.DataFrame,
                      dims: Sequence[str], correlates: pd.DataFrame | None,
                      save: Callable[[Any, str], Any]) -> list[tuple[Any, str, list[str]]]:
    """Overlay figures of ``dims`` (latent columns of ``table``), each on its exemplar image,
    at most :data:`MAPS_PER_FIGURE` per figure; ``save(fig, file)`` writes a figure and returns
    its path. Returns (path, exemplar name, dims) per figure."""
    from ..embeddings import latent_maps

    out = []
    for image, group in exemplars(table, dims).items():
        for start in range(0, len(group), MAPS_PER_FIGURE):
            chunk = group[start:start + MAPS_PER_FIGURE]
            maps = latent_maps(features, images[image], chunk)
            labels = [latent_label(n, correlates) for n in maps.names]
            fig = plot_latent_overlays(maps, labels, title=f"exemplar: {names[image]}")
            out.append((save(fig, f"latent_exemplar_{chunk[0]}.png"), names[image], chunk))
    return out

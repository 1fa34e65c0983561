"""How robust the physical story is: do a class's top physical drivers recur across the outer folds?

A held-out set is explained by one model per outer fold, each on the images it never saw. For
each fold and class the physical descriptors are ranked by a score computed from that fold's
held-out explanations alone:

* heads with trees: the mean |TreeSHAP| of the descriptor for the class over the fold's images;
* other heads: the descriptor's screening score for the class
  (:func:`~hybridtmd.explanation.descriptor_shapley.screen_descriptors`: what the descriptor does
  alone and what is lost without it, in probability) by the fold's model on its images — not
  the per-descriptor Shapley values, whose players are the same few screened descriptors in
  every fold and so would recur by construction.

A class's top drivers are its ``top`` descriptors by the score averaged over the folds; each
recurs in as many folds as rank it in their own top ``top``. "4 of 5 recur in all 3 folds" says
the story would read the same whichever samples had trained the model; "1 of 5" says it is the
story of one split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..model import PHYS_PREFIX
from .attributions import per_class

STABILITY_COLUMNS = ["class", "rank", "descriptor", "mean_score", "folds_in_top", "n_folds"]


def fold_driver_scores(explained: Any) -> pd.DataFrame | None:
    """Per fold, class and physical descriptor the score that ranks the drivers (module
    docstring): columns ``fold``, ``class``, ``descriptor``, ``score``; None when the set is not
    held out or has no per-descriptor attribution."""
    if not explained.held_out or explained.fold is None:
        return None
    if explained.features is None:
        return explained.fold_screening
    values, _, outputs = per_class(explained.features)
    names = [str(f) for f in explained.features.feature_names]
    physical = [j for j, f in enumerate(names) if f.startswith(PHYS_PREFIX)]
    if not physical:
        return None
    classes = _output_classes(outputs, explained.classes, np.ndim(explained.features.values))
    parts = []
    for fold in np.unique(explained.fold):
        rows = explained.fold == fold
        for column, cls in classes:
            score = np.abs(values[rows][:, physical, column]).mean(axis=0)
            parts.append(pd.DataFrame({"fold": int(fold), "class": cls, "descriptor": [names[j] for j in physical],
                                       "score": score}))
    return pd.concat(parts, ignore_index=True)


def _output_classes(outputs: list[str], classes: Sequence[str], ndim: int) -> list[tuple[int, str]]:
    """(output column, class) of every class: a binary explanation's one output ranks the
    drivers of both classes (the other class's values are its negation: the same |values|)."""
    if ndim == 3:
        return list(enumerate(outputs))
    return [(0, str(c)) for c in classes] if len(classes) == 2 else [(0, outputs[0])]


def driver_stability(explained: Any, top: int = 5) -> pd.DataFrame:
    """Each class's ``top`` physical drivers and in how many outer folds each is among that fold's
    own top ``top`` (columns :data:`STABILITY_COLUMNS`); empty when not measurable."""
    scores = fold_driver_scores(explained)
    if scores is None or not len(scores):
        return pd.DataFrame(columns=STABILITY_COLUMNS)
    n_folds = int(scores["fold"].nunique())
    ranked = scores.sort_values(["fold", "class", "score"], ascending=[True, True, False], kind="stable")
    fold_top = ranked.groupby(["fold", "class"], sort=False).head(top)
    counts = fold_top.groupby(["class", "descriptor"]).size()
    rows = []
    for cls, part in scores.groupby("class", sort=False):
        mean = part.groupby("descriptor", sort=False)["score"].mean().sort_values(ascending=False, kind="stable")
        for rank, (descriptor, value) in enumerate(mean.head(top).items(), start=1):
            rows.append({"class": cls, "rank": rank, "descriptor": descriptor, "mean_score": float(value),
                         "folds_in_top": int(counts.get((cls, descriptor), 0)), "n_folds": n_folds})
    return pd.DataFrame(rows, columns=STABILITY_COLUMNS)


def stability_sentence(stability: pd.DataFrame, top: int = 5) -> str:
    """One line: per class, how many of its top drivers recur in the top ``top`` of every fold, and
    each driver's count, e.g. ``WS2: 3 of 5 in every fold (sq 3/3, sal 3/3, str 3/3, sdr 2/3, ssk 1/3)``."""
    if not len(stability):
        return ""
    n_folds = int(stability["n_folds"].iloc[0])
    parts = []
    for cls, rows in stability.groupby("class", sort=False):
        every = int((rows["folds_in_top"] == n_folds).sum())
        each = ", ".join(f"{d[len(PHYS_PREFIX):]} {n}/{n_folds}" for d, n in zip(rows["descriptor"],
                                                                                  rows["folds_in_top"], strict=True))
        parts.append(f"{cls}: {every} of {len(rows)} in every fold ({each})")
    return (f"Explanation stability — how many of each class's top-{top} physical drivers are also in the top {top} "
            f"of each of the {n_folds} outer folds' own held-out explanations: " + "; ".join(parts) + ".")

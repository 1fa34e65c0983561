"""Per-descriptor Shapley values for heads without trees (the kernel SVM, any ``predict_proba``).

TreeSHAP gives every feature its own exact value; for other heads exact Shapley values over
~50-100 physical descriptors plus 1280 embedding dimensions would need ``2**1380`` coalitions.
:func:`descriptor_shapley` keeps the exactness and bounds the cost by coarsening the game:

* **players**: the ``top`` physical descriptors chosen by :func:`screen_descriptors` (one player
  each), the remaining physical descriptors as one player (``physical (rest)``), the whole CNN
  embedding as one player (``latent``) and any other columns as one player (``other``): at most
  ``top + 3`` players, so all ``2**(top + 3)`` coalitions are enumerated (:func:`group_shapley`);
* **value function**: interventional, ``v(S) = mean_b f(x_S, b_not S)``, the mean predicted
  probability when the players in ``S`` take the explained image's values and all others a
  background row's (Janzing, Minorics & Blöbaum, AISTATS 2020); the **background** is a seeded
  random sample of ``max_background`` training rows: the model's own (recovered from its OOD
  reference) or, for held-out explanations, the fold's training table;
* **exact for that game**: the values of each image add up to its probability minus the mean
  background probability (efficiency), to float rounding; a chosen descriptor's value is its
  exact Shapley value when the rest of the physical block moves as one player. It is not an
  estimate of the value the descriptor would have in the game of all 1380 features, whose
  difference is how the descriptor's effect interacts with the individual other descriptors.

**Screening** (which descriptors become players) scores each physical descriptor ``d`` by the two
extreme marginal contributions of the full game, averaged over (at most ``screen_images``)
images, the background and the classes: ``|v({d}) - v(∅)| + |v(N) - v(N \\ {d})|`` (what the
descriptor does alone, and what is lost without it). It costs ``2 P B`` model evaluations per
screened image for ``P`` descriptors and ``B`` background rows; the Shapley values cost
``2**(top + 3) B`` per explained image.

The per-class sentences (:func:`~hybridtmd.explanation.story.class_stories`) read these values as
they read TreeSHAP's: a sentence needs |Spearman ρ(descriptor value, its Shapley value)| ≥ 0.6.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..model import LATENT_PREFIX, PHYS_PREFIX, HybridClassifier
from .shapley import background_table, group_shapley, sample_rows

#: the players that are blocks of columns rather than one descriptor
REST_PLAYER, LATENT_PLAYER, OTHER_PLAYER = "physical (rest)", "latent", "other"


def _table(model: Any, X: Any) -> pd.DataFrame:
    return model.transform_features(X) if isinstance(model, HybridClassifier) else pd.DataFrame(X)


def _background(model: Any, table: pd.DataFrame, background: pd.DataFrame | None, max_background: int,
                random_state: int | None) -> pd.DataFrame:
    if background is None:
        background = background_table(model, max_background, random_state)
    return sample_rows(background[list(table.columns)], max_background, random_state)


def screen_descriptors(model: Any, X: Any, *, background: pd.DataFrame | None = None, max_background: int = 32,
                       screen_images: int = 32, random_state: int | None = 0, per_class: bool = False) -> Any:
    """The screening score of every physical descriptor of ``model``'s table (module docstring),
    largest first: the mean over images, background rows and classes of ``|v({d}) - v(∅)|`` plus
    that of ``|v(N) - v(N \\ {d})|``, in probability units. ``per_class``: a DataFrame of the
    scores of each class (columns the model's classes; their row mean is the score), rows in
    the same order."""
    table = _table(model, X)
    physical = [j for j, c in enumerate(table.columns) if str(c).startswith(PHYS_PREFIX)]
    classes = [str(c) for c in getattr(model, "classes_", [])]
    if not physical and per_class:
        return pd.DataFrame(columns=classes, dtype=np.float64)
    if not physical:
        return pd.Series(dtype=np.float64, name="screening")
    rows = sample_rows(table, screen_images, random_state).to_numpy(dtype=np.float64)
    base = _background(model, table, background, max_background, random_state).to_numpy(dtype=np.float64)
    columns = [str(c) for c in table.columns]

    def proba(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_proba(pd.DataFrame(batch, columns=columns)), dtype=np.float64)

    empty = proba(base).mean(axis=0)
    scores = np.zeros((len(physical), len(empty)))
    for x in rows:
        full = proba(x[None, :])[0]
        alone = np.repeat(base[None, :, :], len(physical), axis=0)  # (P, B, F): d from the image, rest background
        without = np.repeat(np.repeat(x[None, None, :], len(base), axis=1), len(physical), axis=0)
        for i, j in enumerate(physical):
            alone[i, :, j] = x[j]
            without[i, :, j] = base[:, j]
        v_alone = proba(alone.reshape(-1, len(columns))).reshape(len(physical), len(base), -1).mean(axis=1)
        v_without = proba(without.reshape(-1, len(columns))).reshape(len(physical), len(base), -1).mean(axis=1)
        scores += np.abs(v_alone - empty) + np.abs(full - v_without)
    index = [columns[j] for j in physical]
    score = pd.Series(scores.mean(axis=1) / len(rows), index=index, name="screening")
    order = score.sort_values(ascending=False, kind="stable").index
    if per_class:
        return pd.DataFrame(scores / len(rows), index=index, columns=classes or None).loc[order]
    return score.loc[order]


def descriptor_players(columns: Sequence[str], descriptors: Sequence[str]) -> dict[str, list[str]]:
    """Player → columns: each of ``descriptors`` alone, then the other physical columns, the
    latent block and any other columns as one player each (empty players dropped)."""
    columns = [str(c) for c in columns]
    unknown = [d for d in descriptors if d not in columns or not d.startswith(PHYS_PREFIX)]
    if unknown:
        raise ValueError(f"not physical columns of the table: {unknown[:5]}")
    chosen = set(descriptors)
    players = {d: [d] for d in descriptors}
    players[REST_PLAYER] = [c for c in columns if c.startswith(PHYS_PREFIX) and c not in chosen]
    players[LATENT_PLAYER] = [c for c in columns if c.startswith(LATENT_PREFIX)]
    players[OTHER_PLAYER] = [c for c in columns if not c.startswith((PHYS_PREFIX, LATENT_PREFIX))]
    return {name: cols for name, cols in players.items() if cols}


def descriptor_shapley(model: Any, X: Any, *, descriptors: Sequence[str] | None = None, top: int = 5,
                       background: pd.DataFrame | None = None, max_background: int = 32, screen_images: int = 32,
                       random_state: int | None = 0) -> Any:
    """Exact Shapley values of the probabilities with the ``top`` screened physical descriptors
    as players (module docstring), for any fitted model with ``predict_proba``.

    ``descriptors`` gives the players instead of screening (e.g. one list for all the folds of a
    held-out set). ``background`` / ``max_background`` / ``random_state`` as for
    :func:`~hybridtmd.explanation.group_shapley`.

    Returns a ``shap.Explanation``: ``values`` (n_images, n_players, n_classes), ``base_values``
    (the mean background probability), ``feature_names`` the players (descriptor columns first),
    ``data`` the descriptors' values (NaN for the block players); ``values.sum(axis=1) +
    base_values`` equals ``predict_proba``.
    """
    import shap

    table = _table(model, X)
    if descriptors is None:
        ranked = screen_descriptors(model, table, background=background, max_background=max_background,
                                    screen_images=screen_images, random_state=random_state)
        descriptors = list(ranked.index[:top])
    players = descriptor_players(table.columns, descriptors)
    grouped = group_shapley(model, table, groups=players, background=background, max_background=max_background,
                            random_state=random_state)
    names = list(grouped.feature_names)
    data = np.full((len(table), len(names)), np.nan)
    for j, name in enumerate(names):
        if name in descriptors:
            data[:, j] = table[name].to_numpy(dtype=np.float64)
    return shap.Explanation(values=grouped.values, base_values=grouped.base_values, data=data, feature_names=names,
                            output_names=grouped.output_names)

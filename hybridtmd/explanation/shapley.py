"""Attribution to feature groups for every head: exact group Shapley values, and TreeSHAP summed.

With a handful of feature groups (the descriptor families and the CNN ``latent`` block: 6-8 of
them) the Shapley values of the *groups* can be computed exactly by enumerating all ``2**g``
coalitions, for any model with ``predict_proba`` (the kernel-SVM head, a stack, any
scikit-learn classifier). :func:`group_shapley` does that with an **interventional background**:

    v(S) = mean over background rows b of f(x_S, b_not S)

the model's output when the groups in ``S`` take the explained image's values and every other
feature takes a background row's value, averaged over the background (the "interventional" or
"marginal" value function; Janzing, Minorics & Blöbaum, AISTATS 2020; Chen et al., "True to the
model or true to the data?", 2020). The Shapley value of group ``j`` is

    phi_j = sum over S not containing j of |S|! (g - |S| - 1)! / g! * (v(S + j) - v(S))

and they add up exactly: ``sum_j phi_j + v(empty) = f(x)`` (efficiency), with ``v(empty)`` the
mean output over the background. The background is a random sample (``max_background`` rows,
seeded) of the training table — by default the model's own training rows, recovered from its
out-of-distribution reference — so a group's value answers "how much does knowing this group of
the image's features, rather than a typical training image's, move the output".

:func:`group_explanation` is the one entry point: for an XGBoost head the per-feature exact
TreeSHAP values (margin, log-odds) summed over each group (exact sums; efficiency holds because
TreeSHAP's does), otherwise group Shapley of the probabilities.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..model import HybridClassifier, StackHead
from .attributions import per_class, tree_shap
from .groups import member_positions, regroup

OUTPUTS = ("probability", "log_probability")


def background_table(model: HybridClassifier, max_rows: int | None = None,
                     random_state: int | None = 0) -> pd.DataFrame:
    """The model's training table as its out-of-distribution reference stores it (standardised
    rows mapped back: ``reference * scale + center``; missing values appear at the training
    median), optionally a random sample of ``max_rows`` rows. Raises ValueError for a model
    fitted with ``ood_neighbors=None`` (pass a background table then)."""
    ood = getattr(model, "ood_", None)
    if ood is None:
        raise ValueError("the model keeps no training rows (ood_neighbors=None): pass background=<training table>")
    rows = np.asarray(ood.reference_, dtype=np.float64) * ood.scale_ + ood.center_
    table = pd.DataFrame(rows, columns=model.feature_names_)
    return sample_rows(table, max_rows, random_state)


def sample_rows(table: pd.DataFrame, max_rows: int | None, random_state: int | None = 0) -> pd.DataFrame:
    """``table``, or ``max_rows`` of its rows drawn without replacement (seeded), in table order."""
    if max_rows is None or len(table) <= max_rows:
        return table.reset_index(drop=True)
    keep = np.sort(np.random.default_rng(random_state).choice(len(table), max_rows, replace=False))
    return table.iloc[keep].reset_index(drop=True)


def shapley_weights(n_players: int) -> np.ndarray:
    """``w[s] = s! (g - s - 1)! / g!``: the weight of a coalition of size ``s`` without the player."""
    g = n_players
    return np.array([math.factorial(s) * math.factorial(g - s - 1) / math.factorial(g) for s in range(g)])


def shapley_from_values(v: np.ndarray) -> np.ndarray:
    """Exact Shapley values from the value of every coalition.

    ``v`` has shape ``(2**g, ...)``, coalition ``c`` holding the players whose bits are set in
    ``c``. Returns ``(g, ...)``; they sum to ``v[-1] - v[0]``.
    """
    n = v.shape[0]
    g = n.bit_length() - 1
    if n != 2 ** g:
        raise ValueError(f"expected 2**g coalition values, got {n}")
    weights = shapley_weights(g)
    sizes = np.array([bin(c).count("1") for c in range(n)])
    phi = np.zeros((g, *v.shape[1:]))
    for j in range(g):
        without = np.array([c for c in range(n) if not c >> j & 1])
        w = weights[sizes[without]].reshape(-1, *([1] * (v.ndim - 1)))
        phi[j] = (w * (v[without | 1 << j] - v[without])).sum(axis=0)
    return phi


def _model_output(model: Any, columns: list[str], output: str):
    def f(rows: np.ndarray) -> np.ndarray:
        proba = np.asarray(model.predict_proba(pd.DataFrame(rows, columns=columns)), dtype=np.float64)
        return proba if output == "probability" else np.log(np.clip(proba, 1e-300, None))
    return f


def group_shapley(model: Any, X: Any, *, groups: Mapping[str, Sequence[str]] | None = None,
                  background: pd.DataFrame | None = None, max_background: int = 64, output: str = "probability",
                  random_state: int | None = 0) -> Any:
    """Exact Shapley values of feature groups (module docstring), for any fitted model with
    ``predict_proba``.

    Parameters
    ----------
    model : HybridClassifier or classifier
        A HybridClassifier takes images or tables (``X`` becomes :meth:`transform_features`);
        another classifier takes a DataFrame with ``background``'s columns.
    X : images or feature table
    groups : mapping group → columns, optional
        Default ``model.feature_groups_``; columns in no group form ``ungrouped``.
    background : DataFrame, optional
        Rows standing in for "not known" groups; default :func:`background_table` (the training rows).
    max_background : int
        Background rows used (a seeded random sample); cost is ``2**g * max_background`` model
        evaluations per image.
    output : "probability" or "log_probability"

    Returns
    -------
    shap.Explanation
        ``values`` (n_images, n_groups, n_classes), ``base_values`` (n_images, n_classes) the
        mean background output, ``feature_names`` the groups, ``output_names`` the classes;
        ``values.sum(axis=1) + base_values`` equals the model's output on ``X`` to float rounding.
    """
    import shap

    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, not {output!r}")
    start = time.perf_counter()
    table = model.transform_features(X) if isinstance(model, HybridClassifier) else pd.DataFrame(X)
    if background is None:
        background = background_table(model, max_background, random_state)
    background = sample_rows(background[list(table.columns)], max_background, random_state)
    columns = [str(c) for c in table.columns]
    members = member_positions(columns, groups if groups is not None else model.feature_groups_)
    names = list(members)
    if len(names) > 12:
        raise ValueError(f"{len(names)} groups need 2**{len(names)} coalitions per image: merge groups (at most 12)")
    masks = np.zeros((2 ** len(names), len(columns)), bool)
    for c in range(len(masks)):
        for j, positions in enumerate(members.values()):
            masks[c, positions] = bool(c >> j & 1)
    f = _model_output(model, columns, output)
    base_rows = background.to_numpy(dtype=np.float64)
    values = []
    for x in table.to_numpy(dtype=np.float64):
        rows = np.where(masks[:, None, :], x[None, None, :], base_rows[None, :, :])  # (2**g, B, F)
        v = f(rows.reshape(-1, len(columns))).reshape(len(masks), len(base_rows), -1).mean(axis=1)
        values.append(shapley_from_values(v))
    values = np.asarray(values)  # (n, g, k)
    base = np.tile(f(base_rows).mean(axis=0), (len(values), 1))
    classes = [str(c) for c in getattr(model, "classes_", range(base.shape[1]))]
    return shap.Explanation(values=values, base_values=base, feature_names=names, output_names=classes,
                            compute_time=time.perf_counter() - start)


def tree_group_sums(explanation: Any, groups: Mapping[str, Sequence[str]]) -> Any:
    """The per-feature explanation summed within each group: a group-level Explanation with the
    same base values (``values`` (n, g, k); binary explanations keep one output)."""
    import shap

    values, base, classes = per_class(explanation)
    members = member_positions([str(f) for f in explanation.feature_names], groups)
    summed = np.stack([values[:, idx, :].sum(axis=1) for idx in members.values()], axis=1)
    return shap.Explanation(values=summed, base_values=base, feature_names=list(members), output_names=classes)


@dataclass(frozen=True)
class GroupExplanation:
    """Group-level attribution of a model's predictions, whatever its head.

    Attributes
    ----------
    groups : shap.Explanation
        (n_images, n_groups, n_outputs); adds up to the explained output.
    features : shap.Explanation or None
        Per-feature TreeSHAP (XGBoost heads), for the drill-down; None for other heads.
    method : str
        ``"treeshap"`` (exact TreeSHAP summed over groups) or ``"group_shapley"``.
    unit : str
        What the values are in: ``"margin (log-odds)"`` or ``"probability"``.
    """

    groups: Any
    features: Any
    method: str
    unit: str


def has_tree_head(model: Any) -> bool:
    """Whether :func:`~hybridtmd.explanation.attributions.tree_shap` gives exact TreeSHAP for ``model``'s head
    (the XGBoost head or the stack head)."""
    from xgboost import XGBClassifier

    return isinstance(getattr(model, "classifier_", None), XGBClassifier | StackHead)


def group_explanation(model: HybridClassifier, X: Any, *, background: pd.DataFrame | None = None,
                      max_background: int = 64, random_state: int | None = 0,
                      method: str = "auto", group_by: str = "auto") -> GroupExplanation:
    """Group-level attribution for any head: exact TreeSHAP summed over ``model.feature_groups_``
    (regrouped by ``group_by``, :func:`~hybridtmd.explanation.groups.regroup`) for an XGBoost
    head, exact group Shapley (interventional ``background``) of the probabilities otherwise.
    ``method="group_shapley"`` uses group Shapley for every head (one unit for models whose
    heads differ, e.g. out-of-fold models that chose different heads)."""
    if method not in ("auto", "group_shapley"):
        raise ValueError(f"method must be 'auto' or 'group_shapley', not {method!r}")
    if method == "auto" and has_tree_head(model):
        features = tree_shap(model, X)
        groups = getattr(model, "head_feature_groups_", model.feature_groups_)  # the stack's SVM columns: latent
        return GroupExplanation(tree_group_sums(features, regroup(groups, group_by)), features, "treeshap",
                                "margin (log-odds)")
    grouped = group_shapley(model, X, groups=regroup(model.feature_groups_, group_by), background=background,
                            max_background=max_background, random_state=random_state)
    return GroupExplanation(grouped, None, "group_shapley", "probability")

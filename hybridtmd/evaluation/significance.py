"""Is a score, or a difference between two models, more than fold-to-fold noise?

* :func:`permutation_test` - grouped label permutation (Ojala & Garriga, JMLR 11, 1833, 2010,
  test 1): the labels are permuted **between samples** (every image of a sample keeps one label,
  the sample's), the same folds are refitted, and the p-value is the fraction of permutations
  scoring at least the real labels: ``(1 + #{perm >= observed}) / (1 + n_permutations)``.
  Permuting images instead would leave sample identity to predict labels and understate p.
* :func:`paired_differences` - for models scored on the same folds, the mean per-fold difference
  with the corrected resampled t-test of Nadeau & Bengio (Machine Learning 52, 239, 2003):
  folds overlap in training data, so the variance of the mean difference is
  ``(1/J + n_test/n_train) s^2`` instead of ``s^2/J`` (J folds, ``s^2`` their sample variance);
  t has J - 1 degrees of freedom; the interval is 95 %.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..splits import check_fold_feasibility, grouped_splits, stratified_fold_count
from .cv import evaluate, map_fits
from .results import Evaluation


def permute_between_samples(y: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Labels with the sample → label map shuffled: whole samples swap labels, class counts in
    samples are kept, and all images of a sample still share one label."""
    _, first, codes = np.unique(groups, return_index=True, return_inverse=True)
    sample_labels = y[first]
    return rng.permutation(sample_labels)[codes]


#: Draws allowed per permutation to find labels whose training folds hold the classes the real
#: labels' training folds hold (tiny data sets may have none: then the test is refused).
MAX_DRAWS = 100


def fold_compatible_permutation(y: np.ndarray, groups: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]],
                                rng: np.random.Generator) -> np.ndarray:
    """:func:`permute_between_samples`, redrawn until every training fold holds the same classes
    as with the real labels (a fold the real labels can fit stays fittable); ValueError after
    :data:`MAX_DRAWS` draws."""
    wanted = [set(y[train].tolist()) for train, _ in splits]
    for _ in range(MAX_DRAWS):
        permuted = permute_between_samples(y, groups, rng)
        if all(set(permuted[train].tolist()) == classes
               for (train, _), classes in zip(splits, wanted, strict=True)):
            return permuted
    raise ValueError(f"no label permutation in {MAX_DRAWS} draws keeps every class in every training fold "
                     f"({len(np.unique(groups))} samples): too few samples for a permutation test "
                     "(--permutations 0 skips it)")


def permutation_test(model: Any, X: Any, y: Any, groups: Any, *, n_permutations: int = 19,
                     metric: str = "accuracy", cv: Any = None, n_repeats: int = 1, random_state: int = 0,
                     observed: pd.DataFrame | None = None, n_jobs: int | None = 1,
                     backend: str = "loky") -> dict[str, float]:
    """Grouped label-permutation test of ``model`` on the folds of :func:`~.cv.evaluate`.

    Returns ``observed`` (mean ``metric`` over folds with the real labels), ``null_mean``,
    ``null_std``, ``p_value`` and ``n_permutations``. The folds are drawn once from the real labels
    and kept for every permutation (only the labels move); each permutation keeps the classes of
    every training fold (:func:`fold_compatible_permutation`), so every fold can be refitted. Every
    permuted fit is the whole ``model`` fit: a ``classifier="auto"`` hybrid chooses its head anew by
    inner CV on the permuted labels, so the null includes the head selection.

    ``observed``: the fold table of ``model`` already cross-validated with the real labels on these
    folds (the same ``cv``, ``n_repeats`` and ``random_state``; e.g. the ``hybrid`` rows of
    :func:`~.modalities.ablation`): its scores are used instead of refitting the folds.
    ``n_jobs`` permutations are fitted at once with joblib's ``backend``; the labels are drawn in
    order beforehand, so the result is the serial one for every ``n_jobs``.
    """
    y, groups = np.asarray(y), np.asarray(groups)
    if (n_folds := stratified_fold_count(cv)) is not None:  # permutations keep each class's samples
        check_fold_feasibility(y, groups, n_folds)
    drawn = grouped_splits(y, groups, cv, n_repeats=n_repeats, random_state=random_state)
    splits = [(s.train, s.test) for s in drawn]
    if observed is None:
        observed = fold_scores(model, X, y, groups, splits)
    else:
        observed = matching_folds(observed, drawn)
    score = float(observed[metric].mean())
    rng = np.random.default_rng(random_state)
    draws = [fold_compatible_permutation(y, groups, splits, rng) for _ in range(int(n_permutations))]
    null = [float(folds[metric].mean()) for folds in map_fits(permuted_fold_scores, draws, model, X, groups, splits,
                                                               n_jobs=n_jobs, per_task=len(splits), backend=backend)]
    null_arr = np.asarray(null)
    return {"observed": score, "null_mean": float(null_arr.mean()) if null else float("nan"),
            "null_std": float(null_arr.std(ddof=1)) if len(null) > 1 else float("nan"),
            "p_value": float((1 + np.sum(null_arr >= score)) / (1 + len(null))), "n_permutations": len(null)}


def fold_scores(model: Any, X: Any, y: np.ndarray, groups: np.ndarray,
                splits: list[tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """The fold table of ``model`` refitted on ``splits`` with labels ``y``."""
    return evaluate({"m": model}, X, y, groups, cv=FixedFolds(splits)).folds


def permuted_fold_scores(permuted: np.ndarray, model: Any, X: Any, groups: np.ndarray,
                         splits: list[tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """:func:`fold_scores` with the permuted labels first (one task of :func:`~.cv.map_fits`)."""
    return fold_scores(model, X, permuted, groups, splits)


def matching_folds(observed: pd.DataFrame, splits: list[Any]) -> pd.DataFrame:
    """``observed`` checked against the folds drawn here: one row per (repeat, fold) with the
    same number of test images; ValueError otherwise (scores of other folds would not compare)."""
    sizes = {(s.repeat, s.fold): len(s.test) for s in splits}
    given = {(int(r), int(f)): int(n) for r, f, n in observed[["repeat", "fold", "n_test"]].itertuples(index=False)}
    if len(observed) != len(splits) or given != sizes:
        raise ValueError(f"observed holds {len(observed)} fold rows that are not the {len(splits)} folds drawn here "
                         "(give the scores of the same model on the same cv, n_repeats and random_state)")
    return observed


class FixedFolds:
    """A splitter that replays given (train, test) index pairs (the real-label folds)."""

    def __init__(self, splits: list[tuple[np.ndarray, np.ndarray]]):
        self.splits = splits

    def split(self, X: Any = None, y: Any = None, groups: Any = None):
        yield from self.splits

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return len(self.splits)


def paired_differences(result: Evaluation, metric: str = "accuracy") -> pd.DataFrame:
    """Every pair of configurations of ``result`` scored on the same folds: mean difference of
    ``metric`` (first minus second), its 95 % interval and two-sided p-value by the corrected
    resampled t-test (module docstring). Pairs are matched on ``repeat`` and ``fold`` (and any
    modality column other than ``model``)."""
    folds = result.folds
    context = [k for k in result.keys if k != "model"]
    rows = []
    for ctx, part in (folds.groupby(context, sort=False) if context else [((), folds)]):
        table = part.pivot_table(index=["repeat", "fold"], columns="model", values=metric, sort=False)
        sizes = part.groupby(["repeat", "fold"])[["n_train", "n_test"]].first()
        for a, b in itertools.combinations(list(table.columns), 2):
            diff = (table[a] - table[b]).dropna()
            rows.append({**dict(zip(context, ctx if isinstance(ctx, tuple) else (ctx,), strict=True)),
                         "model_a": a, "model_b": b, **corrected_t(diff.to_numpy(), sizes.loc[diff.index])})
    return pd.DataFrame(rows)


def corrected_t(diff: np.ndarray, sizes: pd.DataFrame) -> dict[str, float]:
    """Nadeau-Bengio corrected resampled t statistics of per-fold differences ``diff``."""
    j = len(diff)
    mean = float(np.mean(diff)) if j else float("nan")
    if j < 2:
        return {"mean_difference": mean, "ci_low": float("nan"), "ci_high": float("nan"), "t": float("nan"),
                "p_value": float("nan"), "n_folds": j}
    ratio = float((sizes["n_test"] / sizes["n_train"]).mean())
    se = float(np.sqrt((1.0 / j + ratio) * np.var(diff, ddof=1)))
    half = float(stats.t.ppf(0.975, j - 1)) * se
    t = mean / se if se > 0 else (0.0 if mean == 0 else float(np.sign(mean)) * float("inf"))
    p = float(2 * stats.t.sf(abs(t), j - 1)) if np.isfinite(t) else 0.0
    return {"mean_difference": mean, "ci_low": mean - half, "ci_high": mean + half, "t": t, "p_value": p,
            "n_folds": j}


__all__ = ["FixedFolds", "corrected_t", "paired_differences", "permutation_test", "permute_between_samples"]

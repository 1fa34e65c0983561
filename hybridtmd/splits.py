"""Sample-grouped splitting: the folds every stage shares.

Images of one sample (group) are never on both sides of a split. The model's inner folds (head
selection, calibration), the fine-tuning baseline's validation split and the evaluation's outer
folds all come from here, so a leak check written once guards all of them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils import check_random_state

from .errors import HybridTMDError


class GroupLeakError(HybridTMDError, ValueError):
    """A train/test split puts images of one sample (group) on both sides."""


def check_grouped_split(train: np.ndarray, test: np.ndarray, groups: np.ndarray) -> None:
    """Raise :class:`GroupLeakError` when a sample is in both ``train`` and ``test``."""
    shared = set(groups[train]) & set(groups[test])
    if shared:
        raise GroupLeakError(f"{len(shared)} sample(s) in both train and test, e.g. {sorted(shared)[:3]}")


def fold_shortfall(y: Any, groups: Any, n_folds: int, min_samples: int | None = None) -> str | None:
    """None when every class of ``y`` has at least ``min_samples`` samples (distinct ``groups``;
    default ``n_folds``), else the one message saying which classes do not.

    Folds grouped by sample and stratified by class put a class in every *test* fold only when it
    has a sample for each fold (``min_samples = n_folds``); every *training* side holds it as soon
    as it has two (``min_samples = 2``: the training sides of :class:`FixedTestSplit`).

    >>> fold_shortfall(["a", "a", "b"], [1, 2, 3], 2).partition(";")[0]
    'b has 1 sample(s) (1 images): fewer samples than the 2 folds need'
    """
    needed = n_folds if min_samples is None else min_samples
    y, groups = np.asarray(y, dtype=object), np.asarray(groups, dtype=object)
    if len(y) != len(groups):
        raise ValueError(f"{len(y)} labels but {len(groups)} groups")
    short = []
    for label in sorted(set(y.tolist()), key=str):
        members = y == label
        n_samples = len(set(groups[members].tolist()))
        if n_samples < needed:
            short.append(f"{label} has {n_samples} sample(s) ({int(members.sum())} images)")
    if not short:
        return None
    return (f"{', '.join(short)}: fewer samples than the {n_folds} folds need; folds are grouped by sample, so "
            f"each class needs at least {needed} samples (use fewer folds or more samples)")


def check_fold_feasibility(y: Any, groups: Any, n_folds: int, where: str = "", min_samples: int | None = None) -> None:
    """ValueError with :func:`fold_shortfall`'s message (after ``where``, e.g. "the images outside
    the test split: ") when a class has fewer samples than the folds need."""
    message = fold_shortfall(y, groups, n_folds, min_samples)
    if message is not None:
        raise ValueError(where + message)


def stratified_fold_count(cv: Any) -> int | None:
    """The folds per class a splitter of :func:`grouped_splits` needs samples for: 5 for the default
    (None), ``n_splits`` of a ``StratifiedGroupKFold``; None for any other splitter (its own rule;
    :class:`FixedTestSplit` checks the images outside its test split itself)."""
    if cv is None:
        return 5
    return int(cv.n_splits) if isinstance(cv, StratifiedGroupKFold) else None


@dataclass(frozen=True)
class Split:
    """One train/test split: indices into the data, and where it comes from."""

    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray


def grouped_splits(y: Any, groups: Any, cv: Any = None, *, n_repeats: int = 1, random_state: int = 0) -> list[Split]:
    """The folds of every repeat, checked for sample leaks.

    ``cv`` defaults to ``StratifiedGroupKFold(5, shuffle=True)``; repeat ``r`` reshuffles with
    ``random_state + r`` (any splitter with ``shuffle``/``random_state`` is reseeded the same way).
    A splitter that puts one sample on both sides of a split raises :class:`GroupLeakError`.
    """
    y, groups = np.asarray(y), np.asarray(groups)
    if len(y) != len(groups):
        raise ValueError(f"{len(y)} labels but {len(groups)} groups")
    base = StratifiedGroupKFold(5, shuffle=True) if cv is None else cv
    out = []
    for repeat in range(n_repeats):
        splitter = copy.deepcopy(base)
        if getattr(splitter, "shuffle", False) or (n_repeats > 1 and hasattr(splitter, "random_state")):
            splitter.shuffle, splitter.random_state = True, random_state + repeat
        for fold, (train, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
            check_grouped_split(train, test, groups)
            out.append(Split(repeat, fold, np.asarray(train), np.asarray(test)))
    return out


class FixedTestSplit:
    """The paper's evaluation with a fixed test set: a splitter for :func:`grouped_splits`.

    The images whose ``splits`` entry is ``"test"`` (files named ``..._test``, or a manifest's
    ``split`` column) are the test side of every split. The other images are divided by
    ``StratifiedGroupKFold(n_splits)`` grouped by sample; split ``k`` trains on every fold but the
    ``k``-th, which is left out (the paper's validation fold, used there to pick the fine-tuning
    epoch; models here choose inside their training side), and tests on the fixed test set. So
    ``n_splits`` models are scored on the same test images and the spread is over training sets.
    As the paper (``codes/utils.py``, ``stratified_train_test_group_kfold``): unshuffled folds
    unless ``shuffle=True`` (repeats of :func:`grouped_splits` reshuffle them). A sample with images
    on both sides raises :class:`GroupLeakError`.

    Moses & Reinhart, *Mach. Learn.: Sci. Technol.* (2025), arXiv:2407.20975.
    """

    def __init__(self, splits: Sequence[Any], n_splits: int = 5, shuffle: bool = False,
                 random_state: int | None = None):
        self.splits = splits
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.random_state = random_state

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return self.n_splits

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        splits = np.asarray(["" if s is None else str(s).lower() for s in self.splits], dtype=object)
        y, groups = np.asarray(y), np.asarray(groups)
        if not len(splits) == len(y) == len(groups):
            raise ValueError(f"{len(splits)} split entries for {len(y)} images")
        test = np.flatnonzero(splits == "test")
        rest = np.flatnonzero(splits != "test")
        if len(test) == 0:
            raise ValueError("a fixed test split needs images whose split is 'test' (files named ..._test, or a "
                             "manifest split column); this data set has none")
        check_grouped_split(rest, test, groups)
        where = "the images outside the test split cannot be divided into folds: "
        # only the training sides must hold every class: two samples of each are enough
        check_fold_feasibility(y[rest], groups[rest], self.n_splits, where, min_samples=2)
        folds = StratifiedGroupKFold(self.n_splits, shuffle=self.shuffle,
                                     random_state=self.random_state if self.shuffle else None)
        try:  # fewer samples in all than folds: scikit-learn's message, said of these images
            rest_folds = list(folds.split(np.zeros(len(rest)), y[rest], groups[rest]))
        except ValueError as exc:
            raise ValueError(f"{where}{exc}") from None
        for train, _validation in rest_folds:
            yield rest[train], test


class _FirstSplits:
    """A splitter that yields only the first ``n`` splits of another (quick runs)."""

    def __init__(self, cv: Any, n: int):
        self.cv, self.n = cv, n
        self.shuffle, self.random_state = getattr(cv, "shuffle", False), getattr(cv, "random_state", None)

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        self.cv.shuffle, self.cv.random_state = self.shuffle, self.random_state
        for i, split in enumerate(self.cv.split(X, y, groups)):
            if i == self.n:
                return
            yield split


def split_limit(cv: Any, n: int | None) -> Any:
    """``cv`` restricted to its first ``n`` splits (None: all), reseeded like ``cv`` by repeats."""
    return cv if n is None else _FirstSplits(cv, n)


def inner_grouped_splits(y_enc: np.ndarray, groups: np.ndarray, n_folds: int,
                         random_state: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inner folds of *training* data for model selection or calibration, grouped by sample.

    ``StratifiedGroupKFold`` with at most ``n_folds`` folds, fewer when the rarest class has fewer
    images or there are fewer samples; folds whose training side lacks a class are dropped (a head
    must see every class). Empty when not even two folds are possible.
    """
    n_splits = min(n_folds, int(np.bincount(y_enc).min()), len(np.unique(groups)))
    if n_splits < 2:
        return []
    cv = StratifiedGroupKFold(n_splits, shuffle=True, random_state=random_state)
    n_classes = len(np.unique(y_enc))
    return [(tr, te) for tr, te in cv.split(np.zeros(len(y_enc)), y_enc, groups)
            if len(np.unique(y_enc[tr])) == n_classes]


def grouped_validation_split(
    y: Sequence[Any] | np.ndarray,
    groups: Sequence[Any] | np.ndarray | None,
    validation_fraction: float,
    random_state: int | np.random.RandomState | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Split positions into (train, validation) by group, stratified by class.

    Each group is assigned to the class of its first image; of each class's groups,
    ``round(validation_fraction * n_groups)`` randomly chosen ones go to validation, but at least
    one group of every class stays in training (a class with a single group is never validated).
    Without ``groups`` every image is its own group. The result is checked with
    :func:`check_grouped_split`.

    Returns
    -------
    train, validation : ndarray of int
        Sorted positions into ``y``; ``validation`` may be empty.
    """
    y = np.asarray(y, dtype=object)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups, dtype=object)
    if len(groups) != len(y):
        raise ValueError(f"groups has {len(groups)} entries, y has {len(y)}")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), not {validation_fraction!r}")
    rng = check_random_state(random_state)
    _, first = np.unique(groups, return_index=True)  # sorted groups: the split never depends on input order
    group_ids = groups[first]
    group_class = y[first]
    held_out: list[Any] = []
    for label in sorted(set(group_class.tolist()), key=str):
        members = group_ids[group_class == label]
        n_val = min(int(round(validation_fraction * len(members))), len(members) - 1)
        if n_val > 0:
            held_out.extend(members[rng.permutation(len(members))[:n_val]].tolist())
    is_val = np.isin(groups, np.asarray(held_out, dtype=object)) if held_out else np.zeros(len(y), dtype=bool)
    train, val = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    check_grouped_split(train, val, groups)
    return train, val


__all__ = [
    "FixedTestSplit",
    "GroupLeakError",
    "Split",
    "check_grouped_split",
    "grouped_splits",
    "grouped_validation_split",
    "inner_grouped_splits",
]

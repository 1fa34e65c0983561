"""The paper's evaluation modalities (Moses & Reinhart, MLST 2025): variations of the training side
only, on the folds of :func:`~hybridtmd.evaluation.evaluate`; test folds are never altered.

* :func:`evaluate_low_data` - the newest class's training images capped (the paper's), or every class's.
* :func:`evaluate_sequential` - classes added one at a time (2 → 3 → 4 → 5).
* :func:`evaluate_multilabel` - one binary target per element (Mo, W, S, Se).
* :func:`ablation` - descriptors-only vs embeddings-only vs hybrid on one feature table."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from ..model import LATENT_PREFIX, PHYS_PREFIX
from .cv import (
    cap_per_class,
    confusion_frame,
    continues,
    evaluate_inputs,
    fit_predict,
    fold_row,
    prepare,
    run_splits,
    sample_scores,
    score_fold,
    training_record,
)
from .results import Evaluation

#: The paper's order of adding classes (Moses & Reinhart 2025, ``Train/fine*class_gen.py``).
PAPER_CLASS_ORDER = ("MoS2", "WS2", "WSe2", "MoSe2", "Mo-WSe2")


def evaluate_low_data(models: Any, X: Any, y: Any, groups: Any, *, caps: Iterable[int] = (64, 32, 16, 8),
                      protocol: str = "paper", class_order: str | Sequence[Any] = "paper",
                      n_classes: Iterable[int] | None = None, variants: Sequence[str] = ("imagenet", "previous"),
                      cv: Any = None, n_repeats: int = 1, random_state: int = 0) -> Evaluation:
    """The paper's low-data modality, on the folds of :func:`evaluate`; test folds are never capped.

    ``protocol="paper"`` (the paper's ``sample_one_multiclass``): for each ``k`` in ``n_classes``
    (default 3 ... number of classes, as the paper's 3, 4, 5; 2 with two classes) the model
    learns the first ``k`` classes of ``class_order`` ("paper": MoS2 → WS2 → WSe2 → MoSe2 →
    Mo-WSe2, the classes present; "frequency": most frequent first; or a list), and
    **only the newest, k-th class** is capped at each of ``caps`` training images (whole samples
    first, :func:`cap_per_class`); the other classes keep all their training images. Tests are
    the test images of those k classes. Two variants: ``imagenet`` fits each setting from scratch
    (the paper's from-ImageNet runs, keys ``k`` and ``k-n``); ``previous`` (models with
    ``fit_continue`` only: the fine-tuning baseline) continues the chain 2 → ... → k-1 trained on
    all images, then learns the k-th class capped (keys ``2-k`` and ``2-k-n``, as in
    ``ImageNet_Sequential.json``; ``n`` uncapped rows are included as ``cap`` 0). Columns
    ``variant``, ``k``, ``cap``, ``setting`` (the paper's key), ``newest`` (the k-th class) and,
    beside accuracy, balanced accuracy and macro-F1, ``newest_recall`` (that class's recall: a
    high accuracy carried by the old classes can hide a newest class that is never predicted).

    ``protocol="balanced_cap"``: every class capped at each cap (all classes, ``cap`` column).
    """
    y, groups, splits, inputs = prepare(models, X, y, groups, cv, n_repeats, random_state)
    caps = [int(c) for c in caps]
    if protocol == "balanced_cap":
        rows, confusion = [], {}
        for cap in caps:
            r, confusion = run_splits(inputs, y, groups, splits, extra={"cap": cap}, train_cap=cap,
                                      random_state=random_state)
            rows += r
        return Evaluation(pd.DataFrame(rows), confusion, keys=["model", "cap"])
    if protocol != "paper":
        raise ValueError(f"protocol must be 'paper' or 'balanced_cap', not {protocol!r}")
    order = resolve_class_order(class_order, y)
    n_classes = list(range(min(3, len(order)), len(order) + 1)) if n_classes is None else list(n_classes)
    if not any(2 <= int(k) <= len(order) for k in n_classes):
        raise ValueError(f"n_classes {n_classes}: none between 2 and the {len(order)} classes present")
    for k in n_classes:
        if 2 <= int(k) <= len(order):
            check_newest_class(order[int(k) - 1], y, groups, splits)
    rows = []
    for split in splits:
        rng_seed = [random_state, split.repeat, split.fold]
        for name, (model, data) in inputs.items():
            rows += paper_low_data_rows(name, model, data, y, groups, split, order, n_classes, caps, variants,
                                        rng_seed)
    return Evaluation(pd.DataFrame(rows), {}, keys=["model", "variant", "setting"])


def low_data_fit_count(models: Any, y: Any, n_splits: int, *, caps: Iterable[int] = (64, 32, 16, 8),
                       protocol: str = "paper", n_classes: Iterable[int] | None = None,
                       variants: Sequence[str] = ("imagenet", "previous")) -> int:
    """How many fits :func:`evaluate_low_data` makes with these arguments on ``n_splits`` splits
    (the total of its progress display): per split and model, every cap and the uncapped setting of
    each class count ``k``, once more for the ``previous`` variant of a model that continues, plus
    that variant's chain 2 → ... → (largest k) − 1."""
    caps = list(caps)
    models = models if isinstance(models, dict) else {"model": models}
    if protocol == "balanced_cap":
        return n_splits * len(models) * len(caps)
    n_present = len(np.unique(np.asarray(y)))
    ks = list(range(min(3, n_present), n_present + 1)) if n_classes is None else [int(k) for k in n_classes]
    ks = [k for k in ks if 2 <= k <= n_present]
    per_split = 0
    for entry in models.values():
        model = entry[0] if isinstance(entry, tuple) else entry
        chained = "previous" in variants and continues(model)
        settings = len(ks) * (1 + len(caps))
        per_split += settings * (int("imagenet" in variants) + int(chained))
        per_split += max(max(ks, default=0) - 2, 0) if chained else 0
    return n_splits * per_split


def resolve_class_order(class_order: str | Sequence[Any], y: np.ndarray) -> list[Any]:
    """The order classes are added in: the paper's (classes present), by frequency, or as given."""
    present = set(np.unique(y).tolist())
    if class_order == "paper":
        order = [c for c in PAPER_CLASS_ORDER if c in present]
        order += sorted(present - set(order), key=str)  # other materials after the paper's five
    elif class_order == "frequency":
        order = list(pd.Series(y).value_counts().index)
    else:
        order = list(class_order)
    if set(order) != present or len(order) != len(set(order)):
        raise ValueError(f"class_order must list every class once; classes: {sorted(map(str, present))}")
    return order


def check_newest_class(newest: Any, y: np.ndarray, groups: np.ndarray, splits: Sequence[Any]) -> None:
    """ValueError naming the ``newest`` class and its count when a fold lacks it on either side: its
    recall needs test images in every fold, and learning it needs training images."""
    is_new = y == newest
    lacking = [s for s in splits if not (is_new[s.train].any() and is_new[s.test].any())]
    if lacking:
        n_folds = len({s.fold for s in splits})
        raise ValueError(f"newest class {newest!r} has {int(is_new.sum())} images in "
                         f"{len(np.unique(groups[is_new]))} samples: too few for the {n_folds} folds grouped by "
                         f"sample ({len(lacking)} of {len(splits)} splits have none of it on their test or training "
                         "side); add images of it, use fewer folds (cv=...) or leave this class count out (n_classes)")


def newest_class_cap(train: np.ndarray, y: np.ndarray, groups: np.ndarray, newest: Any, cap: int | None,
                     rng: np.random.Generator) -> np.ndarray:
    """``train`` with only the ``newest`` class capped at ``cap`` images (whole samples first);
    every other class keeps all of its images. ``cap`` None: unchanged."""
    if cap is None:
        return train
    is_new = y[train] == newest
    kept_new = cap_per_class(train[is_new], y, groups, cap, rng)
    return np.sort(np.concatenate([train[~is_new], kept_new]))


def newest_scores(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[Any]) -> dict[str, float]:
    """:func:`~.cv.score_fold` on ``labels`` (the classes learnt so far, the newest last) plus
    ``newest_recall``: the recall of the class just added, the one a lab adding a material cares
    about (an accuracy carried by the old classes can hide a newest class that is never named)."""
    scores = score_fold(y_true, y_pred, np.asarray(labels))
    return scores | {"newest_recall": scores[f"recall[{labels[-1]}]"]}


def paper_low_data_rows(name: str, model: Any, data: Any, y: np.ndarray, groups: np.ndarray, split: Any,
                        order: list[Any], n_classes: Iterable[int], caps: list[int], variants: Sequence[str],
                        rng_seed: list[int]) -> list[dict[str, Any]]:
    """Rows of one model on one split: every (variant, k, cap) setting of the paper's table."""
    import copy

    rows = []
    chain, chain_k = None, 1  # the `previous` variant's model trained on all images of classes[:chain_k]
    for k in sorted(int(v) for v in n_classes):
        if k < 2 or k > len(order):
            continue
        keep = np.isin(y, order[:k])
        train_k, test = split.train[keep[split.train]], split.test[keep[split.test]]
        for variant in variants:
            if variant == "previous" and not continues(model):
                continue  # without continuation it is the imagenet variant again
            if variant == "previous":
                while chain_k < k - 1:  # extend the chain 2 → ... → k-1 on all training images
                    chain_k += 1
                    stage = split.train[np.isin(y[split.train], order[:chain_k])]
                    chain, _, _, _ = fit_predict(model, data, y, groups, stage, stage[:1], previous=chain)
            for cap in [None, *caps]:
                rng = np.random.default_rng([*rng_seed, k, cap or 0])
                train = newest_class_cap(train_k, y, groups, order[k - 1], cap, rng)
                previous = copy.deepcopy(chain) if variant == "previous" else None
                fitted, pred, proba, seconds = fit_predict(model, data, y, groups, train, test, previous=previous)
                prefix = f"2-{k}" if variant == "previous" else f"{k}"
                setting = prefix if cap is None else f"{prefix}-{cap}"
                extra = {"variant": variant, "k": k, "cap": cap or 0, "setting": setting, "newest": order[k - 1],
                         "n_train_newest": int((y[train] == order[k - 1]).sum())}
                scores = newest_scores(y[test], pred, order[:k]) \
                    | sample_scores(fitted.classes_, y[test], groups[test], pred, proba)
                rows.append(fold_row(name, extra, split, train, test, scores, seconds) | training_record(fitted))
    return rows


def evaluate_sequential(models: Any, X: Any, y: Any, groups: Any, *, class_order: Sequence[Any] | None = None,
                        cv: Any = None, n_repeats: int = 1, random_state: int = 0) -> Evaluation:
    """The paper's sequential modality: classes added one at a time, 2 → 3 → ... → all.

    Stage ``k`` trains on the training images of the first ``k`` classes of ``class_order``
    (default: most frequent first) and tests on the test images of those classes; folds are the
    same at every stage. A model with ``fit_continue`` (the fine-tuning baseline) continues from
    its previous stage's weights, as in the paper; the others are refitted from scratch at every
    stage (XGBoost cannot add classes to a trained multi-class booster; the hybrid refits in
    seconds). Adds ``n_classes``, ``newest`` (the class added at that stage) and ``newest_recall``.
    """
    y, groups = np.asarray(y), np.asarray(groups)
    order = list(class_order) if class_order is not None else list(pd.Series(y).value_counts().index)
    if set(order) != set(np.unique(y)) or len(order) != len(set(order)):
        raise ValueError(f"class_order must list every class once; classes: {sorted(map(str, np.unique(y)))}")
    y, groups, splits, inputs = prepare(models, X, y, groups, cv, n_repeats, random_state)
    labels = np.asarray(order)
    rows, confusion = [], {}
    for name, (model, data) in inputs.items():
        confusion[name] = np.zeros((len(labels), len(labels)), dtype=int)
        for split in splits:
            fitted = None
            for k in range(2, len(order) + 1):
                keep = np.isin(y, order[:k])
                train, test = split.train[keep[split.train]], split.test[keep[split.test]]
                fitted, pred, proba, seconds = fit_predict(model, data, y, groups, train, test, previous=fitted)
                if k == len(order):
                    confusion[name] += confusion_matrix(y[test], pred, labels=labels)
                scores = newest_scores(y[test], pred, order[:k]) \
                    | sample_scores(fitted.classes_, y[test], groups[test], pred, proba)
                stage = {"n_classes": k, "newest": order[k - 1]}
                rows.append(fold_row(name, stage, split, train, test, scores, seconds))
    frames = {n: confusion_frame(m, labels) for n, m in confusion.items()}
    return Evaluation(pd.DataFrame(rows), frames, keys=["model", "n_classes"])


ELEMENT_PATTERN = re.compile(r"([A-Z][a-z]?)")


def element_targets(labels: Sequence[str], elements: Sequence[str] | None = None) -> pd.DataFrame:
    """One boolean column per chemical element present in each material name.

    ``MoS2`` → Mo, S; ``Mo-WSe2`` (an alloy) → Mo, W, Se. ``elements`` fixes the columns
    (default: every element found, in order of first appearance).
    """
    found = [ELEMENT_PATTERN.findall(str(label)) for label in labels]
    columns = list(elements) if elements is not None else list(dict.fromkeys(e for f in found for e in f))
    return pd.DataFrame([[e in f for e in columns] for f in found], columns=columns, dtype=bool)


def evaluate_multilabel(models: Any, X: Any, y: Any, groups: Any, *, cv: Any = None, n_repeats: int = 1,
                        random_state: int = 0) -> Evaluation:
    """The paper's multilabel modality: predict which elements (Mo, W, S, Se) a film contains.

    Folds are stratified by material (the same folds as :func:`evaluate`). Each element gets its
    own binary model (a clone; one-vs-rest as ``MultiOutputClassifier``), an element present or
    absent in every training image is predicted constant. Reports Hamming accuracy (fraction of
    correct element decisions), subset accuracy (all elements right) and per-element accuracy.
    """
    y, groups, splits, inputs = prepare(models, X, y, groups, cv, n_repeats, random_state)
    targets = element_targets(y)
    rows = []
    for name, (model, data) in inputs.items():
        for split in splits:
            pred = np.zeros((len(split.test), targets.shape[1]), dtype=bool)
            seconds = np.zeros(2)
            for j, element in enumerate(targets.columns):
                t = targets[element].to_numpy()
                if len(np.unique(t[split.train])) < 2:
                    pred[:, j] = t[split.train][0]
                    continue
                _, pred_j, _, took = fit_predict(model, data, t, groups, split.train, split.test)
                pred[:, j] = pred_j.astype(bool)
                seconds += took
            truth = targets.to_numpy()[split.test]
            scores = {"hamming_accuracy": float((pred == truth).mean()),
                      "subset_accuracy": float((pred == truth).all(axis=1).mean()),
                      **{f"accuracy[{e}]": float((pred[:, j] == truth[:, j]).mean())
                         for j, e in enumerate(targets.columns)}}
            rows.append(fold_row(name, None, split, split.train, split.test, scores, tuple(seconds)))
    return Evaluation(pd.DataFrame(rows))


def ablation(model: Any, table: pd.DataFrame, y: Any, groups: Any, *, cv: Any = None, n_repeats: int = 1,
             random_state: int = 0, n_jobs: int | None = 1) -> Evaluation:
    """Descriptors only vs embeddings only vs hybrid: ``model`` on the ``phys__*`` columns, the
    ``latent__*`` columns and all of them, on identical folds. Rows are named ``descriptors``,
    ``embeddings`` and ``hybrid`` (a half missing from the table is left out). ``n_jobs`` fits at
    once (:func:`~.cv.evaluate_inputs`)."""
    columns = [str(c) for c in table.columns]
    variants = {
        "descriptors": [c for c in columns if c.startswith(PHYS_PREFIX)],
        "embeddings": [c for c in columns if c.startswith(LATENT_PREFIX)],
        "hybrid": columns,
    }
    inputs = {name: (model, table[cols]) for name, cols in variants.items() if cols}
    return evaluate_inputs(inputs, y, groups, cv=cv, n_repeats=n_repeats, random_state=random_state, n_jobs=n_jobs)


__all__ = ["ablation", "element_targets", "evaluate_low_data", "evaluate_multilabel",
           "evaluate_sequential"]

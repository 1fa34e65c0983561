"""Conformal prediction sets on the paper's embeddings: coverage and set size over grouped folds.

Protocol (printed with the table): outer folds ``StratifiedGroupKFold(5, shuffle=True)`` by
*sample*, reshuffled with seeds ``0..shuffles-1``. On each outer training side one
``HybridClassifier(conformal="class")`` is fitted (a quarter of each class's samples held out for
calibration, the head fitted on the rest); the marginal sets use the same head and the same
calibration scores without the Mondrian categories, so the two modes differ only in calibration.
Reported on the outer test side, per alpha, mode and level (image sets; sample sets from pooled
images): coverage (fraction of sets holding the true class) mean ± std over folds, the lowest
per-class coverage pooled over all folds (and its class), mean set size, and the share of
singleton sets. A mode that cannot make sets at an alpha (too few calibration points of a class)
is reported as such, with the library's message (and the folds it failed in).

``--low-data``: the paper-protocol settings ``k-cap`` of ``evaluate_low_data(protocol="paper")``
(the first k classes of the paper's order, only the newest capped at ``cap`` training images, the
same folds and capping seeds), where the table adds the coverage of the older classes' test images
and how often the newest class is in the set of its own test images, over all of them and over
those whose predicted label is wrong (pooled over folds; counts in brackets). ``--calibration
temperature``, ``--smoothing`` and ``--calibration-share`` measure the alternatives of
docs/notes-conformal2.md; ``--save`` writes the per-fold rows.

    python benchmarks/bench_conformal.py [--shuffles 3] [--head svm] [--alphas 0.1 0.2] [--low-data]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hybridtmd.evaluation.modalities import newest_class_cap, resolve_class_order
from hybridtmd.model import HybridClassifier, conformal, latent_table
from hybridtmd.model.conformal import CALIBRATION_SHARE, ConformalError
from hybridtmd.model.samples import pool_samples
from hybridtmd.splits import grouped_splits

ROOT = Path(__file__).resolve().parent.parent
NPZ = ROOT / "data" / "paper_embeddings" / "mocvd1_center_resnet18_imagenet.npz"
MODES = ("marginal", "class")


def fold_sets(model: HybridClassifier, X: pd.DataFrame, groups: np.ndarray, alpha: float, smoothing: bool = False
              ) -> dict[tuple[str, str], np.ndarray | str]:
    """(mode, level) -> boolean sets of the test rows (or the error's message)."""
    proba = model.predict_proba(X)
    pooled = pool_samples(proba, groups, model.classes_)[[f"p_{c}" for c in model.classes_]].to_numpy()
    out: dict[tuple[str, str], np.ndarray | str] = {}
    for mode in MODES:
        calibration = dataclasses.replace(model.conformal_, mode=mode, smoothing=smoothing)
        for level, p, make in (("image", proba, calibration.image_sets), ("sample", pooled, calibration.sample_sets)):
            try:
                out[mode, level] = make(p, alpha, model.classes_)
            except ConformalError as exc:
                out[mode, level] = str(exc)
    return out


def load() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    with np.load(NPZ, allow_pickle=False) as data:
        return latent_table(data["X"]), data["y"].astype(str), data["groups"].astype(str)


def fit_model(X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, train: np.ndarray, test: np.ndarray, head: str,
              seed: int, calibration: str | None) -> tuple[HybridClassifier, float]:
    assert not set(groups[train]) & set(groups[test])  # no sample on both sides
    start = time.perf_counter()
    model = HybridClassifier(features=None, classifier=head, ood_neighbors=None, conformal="class",
                             calibration=calibration, random_state=seed, n_jobs=1)
    model.fit(X.iloc[train], y[train], groups=groups[train])
    return model, time.perf_counter() - start


def sensitivity(results: pd.DataFrame) -> pd.DataFrame:
    """Coverage of each class per fold (mean ± standard error over folds), to tell a class
    below target from one whose coverage varies with its few calibration points."""
    ok = results[results["error"] == ""]
    per_fold = ok.groupby(["alpha", "mode", "level", "class", "seed", "fold"])[["hits", "n"]].sum()
    coverage = (per_fold["hits"] / per_fold["n"]).groupby(["alpha", "mode", "level", "class"])
    return (coverage.mean().round(3).astype(str) + " ± " + coverage.sem().round(3).astype(str)).unstack("class")


def set_rows(model: HybridClassifier, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, alphas: list[float],
             base: dict, smoothing: bool = False) -> list[dict]:
    """Rows per (alpha, mode, level, true class) of one fitted model on its test rows: images,
    hits (true class in the set), summed set size, singletons, and among the images whose
    predicted label is wrong, their count and hits."""
    truth_img = y
    first = pd.Series(y, index=groups)
    truth_sample = first[~first.index.duplicated()].to_numpy()  # pool_samples' order
    proba = model.predict_proba(X)
    pred_img = model.predict(X)
    pred_sample = pool_samples(proba, groups, model.classes_)["label"].to_numpy()
    rows = []
    for alpha in alphas:
        for (mode, level), sets in fold_sets(model, X, groups, alpha, smoothing).items():
            truth, pred = (truth_img, pred_img) if level == "image" else (truth_sample, pred_sample)
            row = base | {"alpha": alpha, "mode": mode, "level": level}
            if isinstance(sets, str):
                rows.append(row | {"error": sets})
                continue
            codes = np.searchsorted(model.classes_, truth)
            hit = sets[np.arange(len(truth)), codes]
            wrong = pred != truth
            for c, name in enumerate(model.classes_):
                mine = codes == c
                sizes = sets[mine].sum(1)
                rows.append(row | {"class": name, "n": int(mine.sum()), "hits": int(hit[mine].sum()),
                                   "size": float(sizes.sum()), "singletons": int((sizes == 1).sum()),
                                   "wrong": int((mine & wrong).sum()), "wrong_hits": int(hit[mine & wrong].sum()),
                                   "error": ""})
    return rows


def run(shuffles: int, head: str, alphas: list[float], calibration: str | None = None, smoothing: bool = False
        ) -> pd.DataFrame:
    """One row per (shuffle, fold, alpha, mode, level, true class) with hits and set sizes summed."""
    X, y, groups = load()
    rows = []
    for split in grouped_splits(y, groups, n_repeats=shuffles):
        model, seconds = fit_model(X, y, groups, split.train, split.test, head, split.repeat, calibration)
        test = split.test
        rows += set_rows(model, X.iloc[test], y[test], groups[test], alphas,
                         {"seed": split.repeat, "fold": split.fold, "fit_seconds": seconds,
                          "temperature": model.temperature_}, smoothing)
    return pd.DataFrame(rows)


def run_low_data(shuffles: int, head: str, alphas: list[float], caps: list[int], n_classes: list[int],
                 calibration: str | None = None) -> pd.DataFrame:
    """The paper-protocol low-data settings (``evaluate_low_data(protocol="paper")``): on each
    outer fold, the first ``k`` classes of the paper's order, only the newest (k-th) capped at
    ``cap`` training images (whole samples first, the same rng seeds as evaluate_low_data), the
    test images of those k classes uncapped. Rows as :func:`run` plus ``k``, ``cap``, ``newest``."""
    X, y, groups = load()
    order = resolve_class_order("paper", y)
    rows = []
    for split in grouped_splits(y, groups, n_repeats=shuffles):
        for k in n_classes:
            keep = np.isin(y, order[:k])
            train_k, test = split.train[keep[split.train]], split.test[keep[split.test]]
            for cap in caps:
                rng = np.random.default_rng([0, split.repeat, split.fold, k, cap])
                train = newest_class_cap(train_k, y, groups, order[k - 1], cap, rng)
                model, seconds = fit_model(X, y, groups, train, test, head, split.repeat, calibration)
                base = {"seed": split.repeat, "fold": split.fold, "k": k, "cap": cap, "setting": f"{k}-{cap}",
                        "newest": order[k - 1], "fit_seconds": seconds,
                        "newest_train_samples": len(np.unique(groups[train][y[train] == order[k - 1]])),
                        "newest_calibration_images": int((model.conformal_.image_labels
                                                          == list(model.classes_).index(order[k - 1])).sum())}
                rows += set_rows(model, X.iloc[test], y[test], groups[test], alphas, base)
    return pd.DataFrame(rows)


def table(results: pd.DataFrame, keys: tuple[str, ...] = ("alpha", "mode", "level")) -> pd.DataFrame:
    """The summary: one row per ``keys`` (with low-data ``setting`` first); for low-data rows
    also how often the newest class is in the set of its own test images, over all of them and
    over those whose predicted label is wrong (pooled over folds)."""
    out = []
    for values, part in results.groupby(list(keys), sort=False):
        head = dict(zip(keys, values, strict=True)) | {"target": f"{1 - part['alpha'].iloc[0]:.2f}"}
        errors = part.drop_duplicates(["seed", "fold"])["error"]
        errors = errors[errors != ""]
        ok = part[part["error"] == ""]
        if ok.empty:
            out.append(head | {"coverage": "no sets (below)"})
            continue
        per_fold = ok.groupby(["seed", "fold"])[["hits", "n", "size", "singletons"]].sum()
        coverage = per_fold["hits"] / per_fold["n"]
        per_class = ok.groupby("class")[["hits", "n"]].sum()
        class_cov = per_class["hits"] / per_class["n"]
        worst = class_cov.idxmin()
        row = head | {"coverage": f"{coverage.mean():.3f} ± {coverage.std():.3f}",
                      "lowest class coverage": f"{class_cov[worst]:.3f} ({worst})",
                      "mean set size": f"{(per_fold['size'] / per_fold['n']).mean():.2f}",
                      "singletons": f"{(per_fold['singletons'] / per_fold['n']).mean():.2f}",
                      "folds": f"{len(per_fold)}" + (f" ({len(errors)} without sets)" if len(errors) else "")}
        if "newest" in ok:
            is_new = ok["class"] == ok["newest"]
            new = ok[is_new][["hits", "n", "wrong_hits", "wrong"]].sum()
            old = ok[~is_new][["hits", "n"]].sum()
            row |= {"older classes": f"{old['hits'] / old['n']:.3f}",
                    "newest in set": f"{new['hits'] / new['n']:.3f} ({int(new['n'])})",
                    "newest in set, label wrong": f"{new['wrong_hits'] / max(new['wrong'], 1):.3f} "
                                                  f"({int(new['wrong'])})"}
        out.append(row)
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shuffles", type=int, default=3)
    parser.add_argument("--head", default="svm")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.1, 0.2])
    parser.add_argument("--calibration", choices=["temperature"], default=None,
                        help="the head's probabilities temperature-scaled before scoring (fitted on the fitting "
                             "side's inner grouped folds)")
    parser.add_argument("--smoothing", action="store_true", help="crepes' smoothed p-values (seed 0)")
    parser.add_argument("--calibration-share", type=float, default=CALIBRATION_SHARE,
                        help="share of each class's training samples held out to calibrate")
    parser.add_argument("--save", type=Path, help="also write the per-fold rows to this CSV")
    parser.add_argument("--low-data", action="store_true",
                        help="the paper-protocol low-data settings k-cap instead of all data")
    parser.add_argument("--caps", type=int, nargs="+", default=[16, 8])
    parser.add_argument("--n-classes", type=int, nargs="+", default=[3, 4, 5])
    args = parser.parse_args()
    conformal.CALIBRATION_SHARE = args.calibration_share  # read by calibration_split at every fit
    start = time.perf_counter()
    if args.low_data:
        results = run_low_data(args.shuffles, args.head, args.alphas, args.caps, args.n_classes, args.calibration)
        keys: tuple[str, ...] = ("setting", "alpha", "mode", "level")
        results = results.sort_values(["k", "cap"], ascending=[True, False], kind="stable")
    else:
        results = run(args.shuffles, args.head, args.alphas, args.calibration, args.smoothing)
        results = results.sort_values(["alpha", "mode", "level"], kind="stable")
        keys = ("alpha", "mode", "level")
    print(f"paper embeddings ({NPZ.name}), head {args.head}, calibration {args.calibration}, {args.shuffles} "
          f"shuffles x 5 grouped folds{' (low-data settings)' if args.low_data else ''}; conformal calibration: "
          f"{args.calibration_share:.0%} of each class's training samples; crepes, hinge score, "
          f"{'smoothed' if args.smoothing else 'non-smoothed'} p-values")
    print(table(results, keys).to_string(index=False))
    for message in results["error"][results["error"] != ""].str.replace(r"\d+ calibration", "N calibration",
                                                                          regex=True).unique():
        print(f"no sets: {message}")
    if args.low_data:
        counts = results.drop_duplicates(["seed", "fold", "setting"]).groupby("setting", sort=False)
        print("\nnewest class per setting: training samples / calibration images (min-max over folds)")
        print(counts[["newest", "newest_train_samples", "newest_calibration_images"]].agg(
            lambda c: f"{c.min()}-{c.max()}" if pd.api.types.is_numeric_dtype(c) else c.iloc[0]).to_string())
    per_class = results[results["error"] == ""].groupby([*keys, "class"], sort=False)[["hits", "n"]].sum()
    print("\nper-class coverage (pooled over folds):")
    print((per_class["hits"] / per_class["n"]).unstack("class").round(3).to_string())
    if not args.low_data:
        print("\nper-class image coverage per fold, mean ± standard error over folds:")
        print(sensitivity(results.query("level == 'image'")).to_string())
        if args.calibration:
            print(f"fitted temperatures: {results.drop_duplicates(['seed', 'fold'])['temperature'].describe()}")
    if args.save:
        results.to_csv(args.save, index=False)
    print(f"\nmean fit seconds per fold: {results['fit_seconds'].mean():.1f}; "
          f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

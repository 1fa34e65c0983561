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
is reported as such, with the library's message.

    python benchmarks/bench_conformal.py [--shuffles 3] [--head svm] [--alphas 0.1 0.2]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from hybridtmd.model import HybridClassifier, latent_table
from hybridtmd.model.conformal import ConformalError
from hybridtmd.model.samples import pool_samples

ROOT = Path(__file__).resolve().parent.parent
NPZ = ROOT / "data" / "paper_embeddings" / "mocvd1_center_resnet18_imagenet.npz"
MODES = ("marginal", "class")


def fold_sets(model: HybridClassifier, X: pd.DataFrame, groups: np.ndarray, alpha: float
              ) -> dict[tuple[str, str], np.ndarray | str]:
    """(mode, level) -> boolean sets of the test rows (or the error's message)."""
    proba = model.predict_proba(X)
    pooled = pool_samples(proba, groups, model.classes_)[[f"p_{c}" for c in model.classes_]].to_numpy()
    out: dict[tuple[str, str], np.ndarray | str] = {}
    for mode in MODES:
        calibration = dataclasses.replace(model.conformal_, mode=mode)
        for level, p, make in (("image", proba, calibration.image_sets), ("sample", pooled, calibration.sample_sets)):
            try:
                out[mode, level] = make(p, alpha, model.classes_)
            except ConformalError as exc:
                out[mode, level] = str(exc)
    return out


def run(shuffles: int, head: str, alphas: list[float]) -> pd.DataFrame:
    """One row per (shuffle, fold, alpha, mode, level, true class) with hits and set sizes summed."""
    with np.load(NPZ, allow_pickle=False) as data:
        X, y, groups = latent_table(data["X"]), data["y"].astype(str), data["groups"].astype(str)
    rows = []
    for seed in range(shuffles):
        cv = StratifiedGroupKFold(5, shuffle=True, random_state=seed)
        for fold, (train, test) in enumerate(cv.split(X, y, groups)):
            assert not set(groups[train]) & set(groups[test])  # no sample on both sides
            start = time.perf_counter()
            model = HybridClassifier(features=None, classifier=head, ood_neighbors=None, conformal="class",
                                     random_state=seed, n_jobs=1).fit(X.iloc[train], y[train], groups=groups[train])
            seconds = time.perf_counter() - start
            truth_img = y[test]
            first = pd.Series(y[test], index=groups[test])
            truth_sample = first[~first.index.duplicated()].to_numpy()
            for alpha in alphas:
                for (mode, level), sets in fold_sets(model, X.iloc[test], groups[test], alpha).items():
                    truth = truth_img if level == "image" else truth_sample
                    base = {"seed": seed, "fold": fold, "alpha": alpha, "mode": mode, "level": level,
                            "fit_seconds": seconds}
                    if isinstance(sets, str):
                        rows.append(base | {"error": sets})
                        continue
                    codes = np.searchsorted(model.classes_, truth)
                    hit = sets[np.arange(len(truth)), codes]
                    for c, name in enumerate(model.classes_):
                        mine = codes == c
                        sizes = sets[mine].sum(1)
                        rows.append(base | {"class": name, "n": int(mine.sum()), "hits": int(hit[mine].sum()),
                                            "size": float(sizes.sum()), "singletons": int((sizes == 1).sum()),
                                            "error": ""})
    return pd.DataFrame(rows)


def table(results: pd.DataFrame) -> pd.DataFrame:
    """The summary: one row per (alpha, mode, level)."""
    out = []
    for (alpha, mode, level), part in results.groupby(["alpha", "mode", "level"], sort=True):
        errors = part["error"][part["error"] != ""]
        if len(errors) == len(part):
            out.append({"alpha": alpha, "mode": mode, "level": level, "target": f"{1 - alpha:.2f}",
                        "coverage": "no sets (below)"})
            continue
        ok = part[part["error"] == ""]
        per_fold = ok.groupby(["seed", "fold"])[["hits", "n", "size", "singletons"]].sum()
        coverage = per_fold["hits"] / per_fold["n"]
        per_class = ok.groupby("class")[["hits", "n"]].sum()
        class_cov = per_class["hits"] / per_class["n"]
        worst = class_cov.idxmin()
        out.append({"alpha": alpha, "mode": mode, "level": level, "target": f"{1 - alpha:.2f}",
                    "coverage": f"{coverage.mean():.3f} ± {coverage.std():.3f}",
                    "lowest class coverage": f"{class_cov[worst]:.3f} ({worst})",
                    "mean set size": f"{(per_fold['size'] / per_fold['n']).mean():.2f}",
                    "singletons": f"{(per_fold['singletons'] / per_fold['n']).mean():.2f}",
                    "folds": f"{len(per_fold)}" + (f" ({len(errors)} without sets)" if len(errors) else "")})
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shuffles", type=int, default=3)
    parser.add_argument("--head", default="svm")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.1, 0.2])
    args = parser.parse_args()
    start = time.perf_counter()
    results = run(args.shuffles, args.head, args.alphas)
    print(f"paper embeddings ({NPZ.name}), head {args.head}, {args.shuffles} shuffles x 5 grouped folds; "
          f"calibration: a quarter of each class's training samples; crepes, hinge score, non-smoothed p-values")
    print(table(results).to_string(index=False))
    per_class = results[results["error"] == ""].groupby(["alpha", "mode", "level", "class"])[["hits", "n"]].sum()
    for message in results["error"][results["error"] != ""].unique():
        print(f"no sets: {message}")
    print("\nper-class coverage (pooled over folds):")
    print((per_class["hits"] / per_class["n"]).unstack("class").round(3).to_string())
    print(f"\nmean fit seconds per fold: {results['fit_seconds'].mean():.1f}; "
          f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

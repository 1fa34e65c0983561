"""Every head and ``classifier="auto"`` on identical grouped folds: the paper's embeddings and the
bundled synthetic images (hybrid, descriptors-only, embeddings-only tables).

Protocol (printed with the results): outer folds ``StratifiedGroupKFold(5, shuffle=True)`` by
*sample*, reshuffled with seeds ``0..repeats-1``, identical for every head. Every choice is made
on the training side of each outer fold only: ``auto`` picks its head by 3 inner folds grouped by
sample; the SVM's ``C`` and gamma by its own inner grouped folds; the stack's SVM probabilities
are out-of-fold on inner grouped folds. Reported: accuracy and macro-F1 mean ± std over all
outer folds, mean fit seconds per fold, how often ``auto`` chose each head, and the ratio of
``auto``'s fit time to the slowest single head's, measured in the same run.

    python benchmarks/bench_heads.py [--repeats 2] [--skip-synthetic] [--skip-paper]
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedGroupKFold

from hybridtmd.model import LATENT_PREFIX, PHYS_PREFIX, HybridClassifier, latent_table

ROOT = Path(__file__).resolve().parent.parent
NPZ = ROOT / "data" / "paper_embeddings" / "mocvd1_center_resnet18_imagenet.npz"
HEADS = ("xgboost", "svm", "stack", "auto")


def heads_for(table: pd.DataFrame, selection_folds: tuple[int, ...] = (3,),
              singles: tuple[str, ...] = HEADS) -> dict[str, HybridClassifier]:
    """The single heads of ``singles`` the table allows, and ``auto`` with each number of inner
    selection folds (``auto`` = the default, 3; ``auto_<k>f`` = ``selection_folds=k``)."""
    has_latent = any(str(c).startswith(LATENT_PREFIX) for c in table.columns)
    names = [h for h in singles if h != "auto" and (h != "stack" or has_latent)]
    models = {name: HybridClassifier(features=None, classifier=name, ood_neighbors=None) for name in names}
    default = HybridClassifier().selection_folds
    for k in selection_folds:
        name = "auto" if k == default else f"auto_{k}f"
        models[name] = HybridClassifier(features=None, classifier="auto", selection_folds=k, ood_neighbors=None)
    return models


def run(table: pd.DataFrame, y: np.ndarray, groups: np.ndarray, repeats: int,
        selection_folds: tuple[int, ...] = (3,), singles: tuple[str, ...] = HEADS) -> pd.DataFrame:
    """One row per (head, outer fold): accuracy, macro-F1, fit seconds (wall and this process's
    CPU, which other jobs on the machine do not inflate) and auto's choice."""
    rows = []
    models = heads_for(table, selection_folds, singles)
    for seed in range(repeats):
        cv = StratifiedGroupKFold(5, shuffle=True, random_state=seed)
        for fold, (train, test) in enumerate(cv.split(table, y, groups)):
            assert not set(groups[train]) & set(groups[test])  # no sample on both sides
            for name, model in models.items():
                start, cpu = time.perf_counter(), time.process_time()
                fitted = clone(model).fit(table.iloc[train], y[train], groups=groups[train])
                seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
                predicted = fitted.predict(table.iloc[test])
                rows.append({"head": name, "seed": seed, "fold": fold, "fit_seconds": seconds,
                             "fit_cpu_seconds": cpu_seconds,
                             "accuracy": accuracy_score(y[test], predicted),
                             "macro_f1": f1_score(y[test], predicted, average="macro"),
                             "choice": fitted.head_selection_["choice"]})
            print(f"  seed {seed} fold {fold} fit seconds (cpu): " + ", ".join(
                f"{r['head']} {r['fit_seconds']:.1f} ({r['fit_cpu_seconds']:.1f})" for r in rows[-len(models):]),
                flush=True)
            print(f"  seed {seed} fold {fold}: " + ", ".join(
                f"{r['head']} {r['accuracy']:.3f}" for r in rows[-len(models):]), flush=True)
    return pd.DataFrame(rows)


def report(title: str, results: pd.DataFrame) -> None:
    print(f"\n{title}: {results.seed.nunique()} shuffles x 5 folds = {len(results) // results['head'].nunique()} "
          "outer folds per head (identical folds)")
    summary = results.groupby("head", sort=False).agg(
        accuracy=("accuracy", "mean"), accuracy_std=("accuracy", "std"), macro_f1=("macro_f1", "mean"),
        macro_f1_std=("macro_f1", "std"), fit_seconds=("fit_seconds", "mean"), fit_cpu=("fit_cpu_seconds", "mean"))
    for head, row in summary.iterrows():
        print(f"  {head:8s} accuracy {row.accuracy:.3f} ± {row.accuracy_std:.3f}   macro-F1 {row.macro_f1:.3f} ± "
              f"{row.macro_f1_std:.3f}   fit {row.fit_seconds:.1f} s (cpu {row.fit_cpu:.1f} s)")
    autos = [h for h in summary.index if h.startswith("auto")]
    single = summary.drop(index=autos)
    for auto in autos:
        choices = collections.Counter(results.loc[results["head"] == auto, "choice"])
        print(f"  {auto} chose: " + ", ".join(f"{c} {n}x" for c, n in choices.most_common()))
        print(f"  {auto} fit time / slowest single head ({single.fit_seconds.idxmax()}): wall "
              f"{summary.loc[auto, 'fit_seconds'] / single.fit_seconds.max():.2f}x, cpu "
              f"{summary.loc[auto, 'fit_cpu'] / single.fit_cpu.max():.2f}x")


def synthetic_tables() -> tuple[dict[str, pd.DataFrame], np.ndarray, np.ndarray]:
    """Hybrid, descriptors-only and embeddings-only tables of the bundled synthetic images
    (features computed once with the default :class:`~hybridtmd.model.HybridFeatures`)."""
    from hybridtmd.datasets import load_example_dataset
    from hybridtmd.model import HybridFeatures

    data = load_example_dataset()
    table = HybridFeatures().fit_transform(list(data))
    phys = [c for c in table.columns if c.startswith(PHYS_PREFIX)]
    latent = [c for c in table.columns if c.startswith(LATENT_PREFIX)]
    tables = {"hybrid": table, "descriptors-only": table[phys], "embeddings-only": table[latent]}
    return tables, np.asarray(data.labels).astype(str), np.asarray(data.groups).astype(str)


def main(repeats: int, skip_paper: bool, skip_synthetic: bool, selection_folds: tuple[int, ...] = (3,),
         singles: tuple[str, ...] = HEADS) -> None:
    print(__doc__.split("\n\n")[1])
    if not skip_paper:
        with np.load(NPZ, allow_pickle=False) as data:
            X, y, groups = latent_table(data["X"]), data["y"].astype(str), data["groups"].astype(str)
        print(f"\npaper embeddings {NPZ.name}: {len(y)} images, {len(set(groups))} samples, {X.shape[1]}-d")
        report("paper embeddings", run(X, y, groups, repeats, selection_folds, singles))
    if not skip_synthetic:
        tables, y, groups = synthetic_tables()
        for name, table in tables.items():
            print(f"\nsynthetic {name}: {len(y)} images, {len(set(groups))} samples, {table.shape[1]} columns")
            report(f"synthetic {name}", run(table, y, groups, repeats, selection_folds, singles))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="outer shuffles (5 folds each)")
    parser.add_argument("--skip-paper", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--selection-folds", type=int, nargs="+", default=[3],
                        help="inner selection folds of auto (one auto row each; 3 is the default)")
    parser.add_argument("--singles", nargs="*", default=list(HEADS[:-1]), choices=HEADS[:-1],
                        help="single heads to run beside auto (the cost ratio is to the slowest of them)")
    args = parser.parse_args()
    main(args.repeats, args.skip_paper, args.skip_synthetic, tuple(args.selection_folds), tuple(args.singles))

"""Issue 27: does the default estimator name a material learnt from 8-16 images?

The paper's low-data protocol (``evaluate_low_data(protocol="paper")``: k = 3, 4, 5 classes in
the paper's order, only the newest, k-th class capped at 16 and 8 training images, whole samples
first; StratifiedGroupKFold(5) by sample, reshuffled per seed) on the paper's frozen
ImageNet-ResNet18 embeddings, for

* ``svm, no gate`` - ``HybridClassifier(features=None, classifier="svm", few_shot=None)``: the
  SVM row of the issue (what ``auto`` chose on the full table before);
* ``svm + gate`` - the same head with the few-shot gate (:mod:`hybridtmd.model.few_shot`);
* ``default`` - ``HybridClassifier(features=None)``: ``auto`` + the gate, what users get
  (``ood_neighbors=None``: the OOD score changes no prediction and costs time);
* ``auto, no gate`` (``--no-gate-auto``) - ``auto`` without the gate.

Per setting (3, 3-16, 3-8, ..., 5-8) and averaged over k (the issue's goal: newest-class recall
>= 0.5 at 16 and >= 0.3 at 8, accuracy >= the SVM's - 0.01 at each setting, balanced accuracy
above it at every capped setting): accuracy, balanced accuracy, macro-F1 and newest recall,
mean ± std over shuffles x folds, then the goal checked per setting against ``svm, no gate``.
Needs the paper embeddings (skips without them)::

    python benchmarks/bench_low_data_newclass.py [--seeds 0 1 2] [--models svm svm+gate default]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_paper_embeddings import LOW_DATA_METRICS, find_npz  # noqa: E402

from hybridtmd.evaluation import evaluate_low_data  # noqa: E402
from hybridtmd.model import HybridClassifier, latent_table  # noqa: E402

BASELINE = "svm, no gate"
MODELS = {
    "svm": (BASELINE, dict(classifier="svm", few_shot=None)),
    "svm+gate": ("svm + gate", dict(classifier="svm")),
    "default": ("default (auto + gate)", {}),
    "auto": ("auto, no gate", dict(few_shot=None)),
}


def table(folds: pd.DataFrame) -> pd.DataFrame:
    """Per model and setting (and "mean k" per cap): mean and std over shuffle x fold units."""
    metrics = list(LOW_DATA_METRICS)
    per_setting = folds.groupby(["model", "setting", "repeat", "fold"])[metrics].mean()
    over_k = folds.assign(setting=lambda f: "mean k, " + f["cap"].map(lambda c: f"{c}" if c else "all"))
    per_mean = over_k.groupby(["model", "setting", "repeat", "fold"])[metrics].mean()
    return pd.concat([per_setting, per_mean]).groupby(["model", "setting"]).agg(["mean", "std"])


def markdown(summary: pd.DataFrame, units: int) -> str:
    lines = [f"| model | setting | {' | '.join(LOW_DATA_METRICS.values())} |",
             "|" + "---|" * (2 + len(LOW_DATA_METRICS))]
    for (model, setting), row in summary.iterrows():
        lines.append(f"| {model} | {setting} | " + " | ".join(
            f"{row[(m, 'mean')]:.3f} ± {row[(m, 'std')]:.3f}" for m in LOW_DATA_METRICS) + " |")
    return "\n".join(lines) + f"\n\n(mean ± std over {units} shuffle x fold units)"


def goal(summary: pd.DataFrame) -> str:
    """The issue's goal for each model against the baseline, setting by setting."""
    if BASELINE not in summary.index.get_level_values(0):
        return "(goal not checked: run with --models svm ...)"
    lines = []
    base = summary.loc[BASELINE]
    for model in dict.fromkeys(summary.index.get_level_values(0)):
        if model == BASELINE:
            continue
        own, failed = summary.loc[model], []
        for setting in own.index:
            acc, ref = own.loc[setting, ("accuracy", "mean")], base.loc[setting, ("accuracy", "mean")]
            if not setting.startswith("mean") and acc < ref - 0.01:
                failed.append(f"{setting} accuracy {acc:.3f} < {ref - 0.01:.3f}")
            capped = setting.count("-") == 1 or setting.endswith((", 8", ", 16"))
            bal = own.loc[setting, ("balanced_accuracy", "mean")]
            bref = base.loc[setting, ("balanced_accuracy", "mean")]
            if capped and not setting.startswith("mean") and bal <= bref:
                failed.append(f"{setting} balanced accuracy {bal:.3f} <= {bref:.3f}")
        for cap, need in (("16", 0.5), ("8", 0.3)):
            recall = own.loc[f"mean k, {cap}", ("newest_recall", "mean")]
            if recall < need:
                failed.append(f"mean newest recall at {cap} {recall:.3f} < {need}")
        lines.append(f"{model}: goal {'met' if not failed else 'NOT met: ' + '; '.join(failed)}")
    return "\n".join(lines)


def main(seeds: list[int], chosen: list[str], npz: Path | None, save: Path | None = None) -> None:
    try:
        path = find_npz(npz)
    except SystemExit as exc:
        print(f"skipped: {exc}")
        return
    with np.load(path, allow_pickle=False) as data:
        X, y, groups = latent_table(data["X"]), data["y"].astype(str), data["groups"].astype(str)
    models = {MODELS[m][0]: HybridClassifier(features=None, ood_neighbors=None, **MODELS[m][1]) for m in chosen}
    folds = []
    for seed in seeds:
        start = time.perf_counter()
        low = evaluate_low_data(models, X, y, groups, caps=(16, 8), n_classes=(3, 4, 5), variants=("imagenet",),
                                protocol="paper", random_state=seed)
        folds.append(low.folds.assign(repeat=seed))
        if save is not None:  # per seed, so an interrupted run keeps what it measured
            save.mkdir(parents=True, exist_ok=True)
            folds[-1].to_csv(save / f"folds_seed{seed}.csv", index=False)
        print(f"seed {seed}: {time.perf_counter() - start:.0f} s (shared 2-core machine)", flush=True)
        if "head" in low.folds:
            print("  heads: " + ", ".join(f"{m} {h} {n}x" for (m, h), n in low.folds.groupby(["model", "head"]).size()
                                          .items()), flush=True)
    folds = pd.concat(folds, ignore_index=True)
    summary = table(folds)
    print(markdown(summary, len(folds.groupby(["repeat", "fold"]))))
    print(goal(summary))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="fold shuffles (one per seed)")
    parser.add_argument("--models", nargs="*", default=["svm", "svm+gate", "default"], choices=list(MODELS))
    parser.add_argument("--npz", type=Path, default=None)
    parser.add_argument("--save", type=Path, default=None, help="directory for each seed's fold table (CSV)")
    parser.add_argument("--summarise", type=Path, nargs="*", default=None, help="summarise saved fold tables only")
    args = parser.parse_args()
    if args.summarise:
        saved = pd.concat([pd.read_csv(p) for p in args.summarise], ignore_index=True)
        saved["setting"] = saved["setting"].astype(str)
        summary = table(saved)
        print(markdown(summary, len(saved.groupby(["repeat", "fold"]))))
        print(goal(summary))
    else:
        main(args.seeds, args.models, args.npz, args.save)

"""Real data: the embeddings-only HybridClassifier on the paper's frozen ImageNet-ResNet18
embeddings of 1026 real AFM images (626 samples, 5 TMD classes).

Every model is scored on identical folds - StratifiedGroupKFold(5) by *sample*, reshuffled with
each seed - and reported as accuracy / macro-F1 mean ± std over all folds of all seeds:

* ``hybrid (xgboost head)`` - ``HybridClassifier(features=None)``: the default, explainable head;
* ``hybrid (svm head)`` - ``HybridClassifier(features=None, classifier="svm")``: signed square
  root + per-image L2 normalisation of the embedding + standardisation + RBF SVM, C and gamma
  chosen by an inner grouped 3-fold CV of each training fold (nested: the test fold is never seen
  while tuning; the preprocessing was chosen the same way, ``select_svm_preprocessing.py``),
  balanced class weights;
* ``logistic regression`` - standardised, L2 (C=1), balanced: the simple reference.

Next to them, the paper's own end-to-end fine-tuning result (``ImageNet_Sequential.json``: test
accuracy of the 5-class fine-tuned ResNet18, and of the sequential model). The target for the
hybrid is a mean accuracy >= 0.80. Then the low-data modality (training images capped at
64/32/16/8 per class, test folds untouched) for the hybrid heads, next to the paper's capped runs.

    python benchmarks/bench_paper_embeddings.py [--npz PATH] [--repeats 3] [--low-data-seeds 0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hybridtmd.evaluation import evaluate, evaluate_low_data
from hybridtmd.model import HybridClassifier, latent_table

ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = [ROOT / "data" / "paper_embeddings", ROOT.parent / "shared" / "data" / "paper_embeddings"]
NPZ_NAME = "mocvd1_center_resnet18_imagenet.npz"
TARGET = 0.80


def find_npz(path: Path | None) -> Path:
    for candidate in ([path] if path else [c / NPZ_NAME for c in CANDIDATES]):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"paper embeddings not found (looked for {NPZ_NAME} in {', '.join(map(str, CANDIDATES))}); "
                     "pass --npz PATH")


def models(n_jobs: int) -> dict:
    return {
        "hybrid (xgboost head)": HybridClassifier(features=None, ood_neighbors=None, n_jobs=n_jobs),
        "hybrid (svm head)": HybridClassifier(features=None, classifier="svm", ood_neighbors=None),
        "logistic regression": make_pipeline(StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced",
                                                                                  max_iter=5000)),
    }


def main(npz: Path | None, repeats: int, low_data_seeds: list[int], n_jobs: int) -> None:
    path = find_npz(npz)
    with np.load(path, allow_pickle=False) as data:
        X, y, groups = latent_table(data["X"]), data["y"].astype(str), data["groups"].astype(str)
    print(f"{path.name}: {len(y)} images, {len(set(groups))} samples, {X.shape[1]}-d; classes "
          + ", ".join(f"{c} {n}" for c, n in zip(*np.unique(y, return_counts=True), strict=True)))

    start = time.perf_counter()
    result = evaluate(models(n_jobs), X, y, groups, n_repeats=repeats, random_state=0)
    print(f"\ngrouped CV: StratifiedGroupKFold(5) by sample x {repeats} shuffles (seeds 0..{repeats - 1}; "
          f"{repeats * 5} folds per model, identical for every model), {time.perf_counter() - start:.0f} s")
    print(result.format(("accuracy", "macro_f1", "fit_seconds")))
    summary = result.summary()

    paper = json.loads((path.parent / "ImageNet_Sequential.json").read_text()) if (
        path.parent / "ImageNet_Sequential.json").is_file() else None
    if paper:
        print(f"  paper, fine-tuned ResNet18, 5 classes: test {paper['imagenet_test5']['5']:.2f} ± "
              f"{paper['imagenet_test_std5']['5']:.2f}; sequential 2→5: {paper['previous_test5']['2-5']:.2f} ± "
              f"{paper['previous_test_std5']['2-5']:.2f} (the paper's own splits, not these folds)")
    best = max((n for n in summary.index if n.startswith("hybrid")), key=lambda n: summary.loc[n, ("accuracy", "mean")])
    acc = summary.loc[best, ("accuracy", "mean")]
    print(f"  best hybrid head: {best}, accuracy {acc:.3f} = {acc / TARGET:.3f} x target {TARGET:.2f} "
          f"({'met' if acc >= TARGET else 'NOT met'})")

    hybrid_heads = {k: v for k, v in models(n_jobs).items() if k.startswith("hybrid")}
    for seed in low_data_seeds:
        start = time.perf_counter()
        low = evaluate_low_data(hybrid_heads, X, y, groups, caps=(64, 32, 16, 8), random_state=seed)
        print(f"\nlow data (training images capped per class, test folds untouched), seed {seed}, "
              f"{time.perf_counter() - start:.0f} s")
        print(low.format(("accuracy", "macro_f1")))
    if paper:
        print("  paper, fine-tuned ResNet18, 5 classes, capped 64/32/16/8: "
              + ", ".join(f"{paper['imagenet_test5'][f'5-{c}']:.2f}" for c in (64, 32, 16, 8)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--npz", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3, help="reshuffled repeats of the 5 folds")
    parser.add_argument("--low-data-seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--n-jobs", type=int, default=2, help="threads of the XGBoost head")
    args = parser.parse_args()
    main(args.npz, args.repeats, args.low_data_seeds, args.n_jobs)

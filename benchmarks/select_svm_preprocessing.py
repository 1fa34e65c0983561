"""How the kernel-SVM head's preprocessing was chosen - by nested grouped CV, never by test folds.

On the paper's frozen ImageNet-ResNet18 embeddings (1026 real AFM images, 626 samples), for each
of the 5 outer training folds of StratifiedGroupKFold(5, seed 0) by sample, a
:class:`~hybridtmd.model.KernelSVMHead` runs its inner 5-fold grouped CV (balanced class
weights) over a wide grid of ``C`` and kernel-width factor, once per preprocessing candidate:

* ``sqrt``: signed square root + standardisation (``l2_normalize=None``);
* ``sqrt + l2``: signed square root, each image's embedding scaled to unit norm, standardisation
  (``l2_normalize="all"``; Perronnin et al. 2010's power + L2 normalisation).

It prints, per candidate, the best grid point's inner-CV accuracy averaged over outer folds (the
outer test folds are never touched) and which grid points win. The head's defaults
(``l2_normalize`` on the embedding, ``C_grid``, ``gamma_grid``) follow this table.

    python benchmarks/select_svm_preprocessing.py [--npz PATH]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np
from bench_paper_embeddings import find_npz
from joblib import Parallel, delayed
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils.class_weight import compute_sample_weight

from hybridtmd.model import KernelSVMHead

CANDIDATES = {"sqrt": None, "sqrt + l2": "all"}
C_GRID = (3.0, 10.0, 30.0, 100.0, 300.0)
GAMMA_GRID = (0.125, 0.25, 0.5, 1.0, 2.0)


def inner_scores(X: np.ndarray, y: np.ndarray, groups: np.ndarray, l2_normalize: str | None) -> dict:
    head = KernelSVMHead(C_grid=C_GRID, gamma_grid=GAMMA_GRID, l2_normalize=l2_normalize, inner_folds=5,
                         random_state=0)
    head.fit(X, y, sample_weight=compute_sample_weight("balanced", y), groups=groups)
    return head.cv_scores_


def main(npz: Path | None, n_jobs: int) -> None:
    path = find_npz(npz)
    with np.load(path, allow_pickle=False) as data:
        X, y, groups = data["X"].astype(float), data["y"].astype(str), data["groups"].astype(str)
    outer = [train for train, _ in StratifiedGroupKFold(5, shuffle=True, random_state=0).split(X, y, groups)]
    start = time.perf_counter()
    jobs = [(name, k) for name in CANDIDATES for k in range(len(outer))]
    results = Parallel(n_jobs=n_jobs)(
        delayed(inner_scores)(X[outer[k]], y[outer[k]], groups[outer[k]], CANDIDATES[name]) for name, k in jobs)
    print(f"{path.name}: inner 5-fold grouped CV on each of 5 outer training folds (seed 0); "
          f"C in {C_GRID}, gamma factor in {GAMMA_GRID}; {time.perf_counter() - start:.0f} s")
    for name in CANDIDATES:
        per_fold = [scores for (n, _), scores in zip(jobs, results, strict=True) if n == name]
        best = [max(scores.values()) for scores in per_fold]
        winners = Counter(max(scores, key=scores.get) for scores in per_fold)
        mean_grid = {p: np.mean([scores[p] for scores in per_fold]) for p in per_fold[0]}
        top = max(mean_grid, key=mean_grid.get)
        print(f"  {name:10s} best inner accuracy {np.mean(best):.4f} ± {np.std(best):.4f} over outer folds; "
              f"best mean grid point C={top[0]:g}, gamma x{top[1]:g}: {mean_grid[top]:.4f}; "
              f"per-fold winners {dict(winners)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", type=Path, default=None)
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args()
    main(args.npz, args.n_jobs)

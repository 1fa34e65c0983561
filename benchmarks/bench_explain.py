"""Cost of exact TreeSHAP explanations (issue 7).

A :class:`~hybridtmd.model.HybridClassifier` with the default XGBoost head (400 rounds, depth 3,
64 bins; one tree per class per round) is trained on a random table shaped like the hybrid one
(``phys__*`` descriptors ⊕ ``latent__*`` embedding dimensions, class-dependent means so the trees
split on many columns), then

* :func:`hybridtmd.explanation.explain` (XGBoost's native ``pred_contribs``) on ``--n-explain`` rows
  (target < 5 s for 1000 x ~1500 features on 2 cores),
* ``predict_proba`` of the same rows,

and their ratio. Timings are the median of ``--repeats`` runs after a warm-up call.

    python benchmarks/bench_explain.py [--n-explain 1000] [--n-features 1500] [--n-jobs 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from timing import median_time

from hybridtmd.explanation import explain
from hybridtmd.model import HybridClassifier, default_head

N_PHYSICAL = 98  # the default descriptor families


def synthetic_table(n: int, n_features: int, n_classes: int, rng: np.random.Generator) -> tuple[pd.DataFrame,
                                                                                                  np.ndarray]:
    """Rows of ``n_classes`` classes whose means differ on every column by a small random shift."""
    labels = rng.integers(0, n_classes, n)
    shifts = rng.normal(0, 0.3, (n_classes, n_features))
    values = rng.normal(size=(n, n_features)) + shifts[labels]
    columns = [f"phys__x{j:03d}" for j in range(N_PHYSICAL)] + [f"latent__{j:04d}" for j in
                                                                 range(n_features - N_PHYSICAL)]
    return pd.DataFrame(values, columns=columns), np.array([f"class{c}" for c in labels])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=500)
    parser.add_argument("--n-explain", type=int, default=1000)
    parser.add_argument("--n-features", type=int, default=1500)
    parser.add_argument("--n-classes", type=int, default=5)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    train, y = synthetic_table(args.n_train, args.n_features, args.n_classes, rng)
    test, _ = synthetic_table(args.n_explain, args.n_features, args.n_classes, rng)
    start = time.perf_counter()
    model = HybridClassifier(features=None, classifier=default_head(0, n_jobs=args.n_jobs), ood_neighbors=None)
    model.fit(train, y)
    fit_s = time.perf_counter() - start
    booster = model.classifier_.get_booster()
    n_trees = len(booster.get_dump())

    shap_s = median_time(lambda: explain(model, test), args.repeats, warmup=True)
    predict_s = median_time(lambda: model.predict_proba(test), args.repeats, warmup=True)
    expl = explain(model, test)
    margin = model.classifier_.predict(test.to_numpy(), output_margin=True)
    error = float(np.abs(expl.values.sum(axis=1) + expl.base_values - margin).max())

    print(f"table {args.n_explain} x {args.n_features} features, {args.n_classes} classes; default head: "
          f"{n_trees} trees (fit on {args.n_train} rows in {fit_s:.1f} s), {args.n_jobs} thread(s)")
    print(f"explain (exact TreeSHAP): {shap_s:.3f} s  ({args.n_explain / shap_s:.0f} rows/s)  "
          f"{'OK' if shap_s < 5.0 else 'SLOW'} vs target < 5 s")
    print(f"predict_proba:            {predict_s:.3f} s  ({args.n_explain / predict_s:.0f} rows/s)")
    print(f"ratio explain / predict:  {shap_s / predict_s:.1f}x")
    print(f"additivity: max |sum SHAP + base - margin| = {error:.2e}")


if __name__ == "__main__":
    main()

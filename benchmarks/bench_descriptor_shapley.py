"""Cost of the explanations of heads without trees, and of the latent links a model stores (issue 18).

A :class:`~hybridtmd.model.HybridClassifier` with the kernel-SVM head is trained on a random table
shaped like the hybrid one (``--n-physical`` descriptors of the registry ⊕ ``--n-latent``
embedding dimensions; class B shifted on one descriptor, class C on 50 latent dimensions), then

* :func:`hybridtmd.model.latent_correlates` on the training table (what ``fit`` adds to store the
  latent-physical links), against the whole ``fit``;
* :func:`hybridtmd.explanation.group_shapley` (exact, 2^g coalitions, 64 background rows) and
  :func:`hybridtmd.explanation.descriptor_shapley` (screening + exact values with 5 descriptor
  players, 32 background rows) of ``--n-explain`` rows, and their ratio; additivity of both.

    python benchmarks/bench_descriptor_shapley.py [--n-train 300] [--n-explain 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from hybridtmd.descriptors import list_descriptors
from hybridtmd.explanation import descriptor_shapley, group_shapley
from hybridtmd.model import HybridClassifier, KernelSVMHead, latent_correlates


def hybrid_table(n: int, n_physical: int, n_latent: int, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    physical = ["phys__" + name for name in list_descriptors()["name"][:n_physical]]
    latent = [f"latent__{j:04d}" for j in range(n_latent)]
    labels = np.array(["A", "B", "C"])[np.arange(n) % 3]
    table = pd.DataFrame(rng.normal(size=(n, len(physical) + n_latent)), columns=physical + latent)
    table.loc[labels == "B", physical[0]] += 2.0
    table.loc[labels == "C", latent[:50]] += 0.5
    return table, labels


def additivity(explanation, proba: np.ndarray) -> float:
    return float(np.abs(explanation.values.sum(axis=1) + explanation.base_values - proba).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=300)
    parser.add_argument("--n-explain", type=int, default=20)
    parser.add_argument("--n-physical", type=int, default=60)
    parser.add_argument("--n-latent", type=int, default=1280)
    args = parser.parse_args()

    table, labels = hybrid_table(args.n_train, args.n_physical, args.n_latent, np.random.default_rng(0))
    start = time.perf_counter()
    model = HybridClassifier(features=None, classifier=KernelSVMHead(C_grid=(1.0,), gamma_grid=(1.0,)))
    model.fit(table, labels, groups=np.arange(len(labels)) // 2)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    latent_correlates(table)
    links_s = time.perf_counter() - start
    rows = table.iloc[:: max(1, len(table) // args.n_explain)].iloc[: args.n_explain]
    proba = model.predict_proba(rows)
    start = time.perf_counter()
    grouped = group_shapley(model, rows, max_background=64)
    group_s = time.perf_counter() - start
    start = time.perf_counter()
    per_descriptor = descriptor_shapley(model, rows, top=5)
    descriptor_s = time.perf_counter() - start

    print(f"training table {args.n_train} x ({args.n_physical} physical + {args.n_latent} latent), kernel-SVM head")
    print(f"latent links (latent_correlates): {links_s:.2f} s = {links_s / fit_s:.1%} of fit ({fit_s:.1f} s, "
          f"links included)")
    print(f"group_shapley, {len(grouped.feature_names)} groups, 64 background rows: {group_s:.1f} s for "
          f"{len(rows)} images ({group_s / len(rows):.2f} s/image); additivity {additivity(grouped, proba):.1e}")
    print(f"descriptor_shapley, {len(per_descriptor.feature_names)} players, 32 background rows: {descriptor_s:.1f} s "
          f"({descriptor_s / len(rows):.2f} s/image); additivity {additivity(per_descriptor, proba):.1e}")
    print(f"ratio descriptor / group: {descriptor_s / group_s:.2f}x; players: {list(per_descriptor.feature_names)}")


if __name__ == "__main__":
    main()

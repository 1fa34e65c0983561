"""The default ``hybridtmd evaluate`` pipeline on the bundled data, timed per stage, against one
``auto`` fit on the same feature table (issue 33).

The stages are those of the command, in-process and with the command's defaults: read the images,
compute the feature table once (descriptors + embeddings), the ablation (hybrid, descriptors-only,
embeddings-only on the same 5 grouped folds), then the grouped permutation test reusing the
hybrid's real-label folds (``--permutations``, the command's default 0 = none; 19 for the full
test). For every stage: wall seconds and CPU seconds (this process and its worker processes,
``psutil``), so a run on a shared machine can be read by its CPU time. The ratio is to one fit of
the model (``classifier="auto"``: inner selection among three heads, then the chosen head) on the
whole table.

    python benchmarks/bench_evaluate.py [--permutations 19] [--n-jobs -1] [--backend loky]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from joblib.externals.loky import get_reusable_executor
from sklearn.base import clone
from sklearn.model_selection import StratifiedGroupKFold

from hybridtmd.config import load_config
from hybridtmd.evaluation import ablation, permutation_test
from hybridtmd.io import load_dataset
from hybridtmd.model import HybridClassifier
from hybridtmd.splits import grouped_splits

ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds() -> float:
    """User + system CPU of this process and of its ended child processes."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class Stages:
    """Wall and CPU seconds of named stages, in order."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), cpu_seconds()
        yield
        get_reusable_executor().shutdown(wait=True)  # joblib's workers end: their CPU is counted
        self.rows.append((name, time.perf_counter() - wall, cpu_seconds() - cpu))
        print(f"  {name}: {self.rows[-1][1]:.1f} s wall, {self.rows[-1][2]:.1f} s CPU", flush=True)

    def total(self, skip: str = "") -> tuple[float, float]:
        rows = [r for r in self.rows if r[0] != skip]
        return sum(r[1] for r in rows), sum(r[2] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "synthetic_tmd")
    parser.add_argument("--permutations", type=int, default=0, help="the command's default: 0")
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--backend", default="loky")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()

    stages = Stages()
    print(f"{args.data}: {args.folds} grouped folds, ablation, {args.permutations} permutations, n_jobs {args.n_jobs} "
          f"({args.backend}), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    model = HybridClassifier.from_config(load_config(None))
    with stages.timed("read images"):
        dataset = load_dataset(args.data)
        report = dataset.load(on_error="skip")
        labels, groups = dataset.labels[report.indices], dataset.groups[report.indices]
    with stages.timed("features (once per image)"):
        table = clone(model.features).fit_transform(report.images)
    model.set_params(features=None)
    common = {"cv": StratifiedGroupKFold(args.folds, shuffle=True), "n_repeats": 1, "random_state": 0}
    n_splits = len(grouped_splits(labels, groups, common["cv"], random_state=0))
    with stages.timed(f"ablation (3 arms x {n_splits} folds)"):
        result = ablation(model, table, labels, groups, n_jobs=args.n_jobs, **common)
    if args.permutations:
        observed = result.folds[result.folds["model"] == "hybrid"]
        with stages.timed(f"permutation test ({args.permutations} x {n_splits} fits)"):
            test = permutation_test(model, table, labels, groups, n_permutations=args.permutations,
                                    observed=observed, n_jobs=args.n_jobs, backend=args.backend, **common)
        print(f"  p = {test['p_value']:.3g}, observed {test['observed']:.3f}, null {test['null_mean']:.3f}")
    with stages.timed("one auto fit (whole table; not part of evaluate)"):
        single = clone(model).fit(table, labels, groups=groups)
    skip = stages.rows[-1][0]
    wall, cpu = stages.total(skip)
    fit_wall, fit_cpu = stages.rows[-1][1:]
    print(f"\nevaluate: {wall:.1f} s wall ({wall / 60:.1f} min), {cpu:.1f} s CPU; one auto fit "
          f"({single.head_selection_['choice']} chosen): {fit_wall:.1f} s wall, {fit_cpu:.1f} s CPU; "
          f"ratio {wall / fit_wall:.1f}x wall, {cpu / fit_cpu:.1f}x CPU")
    print("| stage | wall s | CPU s |\n|---|---|---|")
    for name, stage_wall, stage_cpu in stages.rows:
        print(f"| {name} | {stage_wall:.1f} | {stage_cpu:.1f} |")


if __name__ == "__main__":
    main()

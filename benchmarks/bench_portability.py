"""Same model, same file, another CPU: the reproducibility contract measured (issue 25).

1. **Cross-ISA probabilities.** The feature table of every bundled image (descriptors +
   EfficientNet-Lite0 embeddings at 224 px) is computed in one subprocess per oneDNN instruction
   set this machine has (``ONEDNN_MAX_CPU_ISA`` = SSE41, AVX2 and the default, e.g. AVX-512).
   Heads fitted on the default table (all 200 images: every image is a training image, the
   hardest case) predict every table; printed: max |Δp| over images and classes against the
   default, and label flips - for the XGBoost head as XGBoost fits it (split points on training
   values) and with :func:`~hybridtmd.model.split_points.centre_splits` (what hybridtmd does), and
   for ``HybridClassifier()`` as users get it (``auto``). Half the samples held out gives the
   same numbers for images the head never saw.
2. **Price.** Embedding forward time per instruction set (the mechanism leaves the forward
   untouched: its ratio to today's forward is the default ISA's own, 1.00x), and the time
   ``centre_splits`` adds to one XGBoost fit.
3. **Accuracy.** The XGBoost head with and without centred splits on identical folds
   (StratifiedGroupKFold(5) by sample x ``--seeds`` shuffles) on the paper embeddings
   (1026 real images) and on the bundled table: mean ± std over folds and the paired difference.

    python benchmarks/bench_portability.py [--seeds 3] [--skip-accuracy]
    python benchmarks/bench_portability.py --float64-cost   # the price of the float64 alternative
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "data" / "paper_embeddings" / "mocvd1_center_resnet18_imagenet.npz"

CHILD = """
import sys, time, torch
import pandas as pd
from hybridtmd.datasets import load_example_dataset
from hybridtmd.model import HybridFeatures
from hybridtmd.preprocess import Preprocessor
data = load_example_dataset()
images = Preprocessor().fit_transform(list(data))
features = HybridFeatures(level_images=False).fit(images)
features.embedder_.set_params(progress=False)
features.embedder_.transform(images[:32])  # warm-up: oneDNN builds its kernels on first use
start = time.perf_counter(); features.embedder_.transform(images); forward = time.perf_counter() - start
features.transform(images).to_parquet(sys.argv[1])
print(forward)
"""


def isas() -> list[str]:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return ["SSE41", "AVX2", ""] if "avx512f" in flags else ["SSE41", ""]


def tables(folder: Path) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    out, forward = {}, {}
    for isa in isas():
        env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"} | ({"ONEDNN_MAX_CPU_ISA": isa}
                                                                                   if isa else {})
        path = folder / f"{isa or 'default'}.parquet"
        result = subprocess.run([sys.executable, "-c", CHILD, str(path)], env=env, capture_output=True, text=True,
                                check=True)
        forward[isa or "default"] = float(result.stdout.strip().splitlines()[-1])
        out[isa or "default"] = pd.read_parquet(path)
    return out, forward


def xgboost_head(X: np.ndarray, y: np.ndarray, centred: bool):
    from sklearn.utils.class_weight import compute_sample_weight

    from hybridtmd.model import default_head
    from hybridtmd.model.split_points import centre_splits

    head = default_head().fit(X, y, sample_weight=compute_sample_weight("balanced", y))
    if centred:
        centre_splits(head, X)
    return head


def cross_isa(frames: dict[str, pd.DataFrame], labels: np.ndarray, groups: np.ndarray) -> None:
    from hybridtmd.model import HybridClassifier

    y = pd.factorize(labels, sort=True)[0]
    held_out = np.isin(groups, np.unique(groups)[1::2])
    reference = frames["default"]
    for name, train in (("all 200 images trained on", np.ones(len(y), bool)), ("half the samples held out",
                                                                               ~held_out)):
        X = reference.to_numpy(np.float64)
        heads = {"XGBoost, splits as fitted": xgboost_head(X[train], y[train], centred=False),
                 "XGBoost, centred splits": xgboost_head(X[train], y[train], centred=True),
                 "HybridClassifier() (auto)": HybridClassifier(features=None).fit(reference[train], labels[train],
                                                                                   groups=groups[train])}
        print(f"\n{name}: max |dp| against the default ISA (label flips), training / held-out images")
        for head_name, head in heads.items():
            p0 = head.predict_proba(reference if isinstance(head, HybridClassifier) else X)
            cells = []
            for isa, frame in frames.items():
                if isa == "default":
                    continue
                p = head.predict_proba(frame if isinstance(head, HybridClassifier) else frame.to_numpy(np.float64))
                gap = np.abs(p - p0).max(axis=1)
                flips = p.argmax(1) != p0.argmax(1)
                part = [f"{gap[m].max():.2g} ({flips[m].sum()})" for m in (train, ~train) if m.any()]
                cells.append(f"{isa}: {' / '.join(part)}")
            chosen = f" [{head.head_selection_['choice']}]" if isinstance(head, HybridClassifier) else ""
            print(f"  {head_name}{chosen}: " + "; ".join(cells))


def centring_cost(X: np.ndarray, y: np.ndarray) -> None:
    from hybridtmd.model.split_points import centre_splits

    start = time.perf_counter()
    head = xgboost_head(X, y, centred=False)
    fit = time.perf_counter() - start
    start = time.perf_counter()
    moved = centre_splits(head, X)
    cost = time.perf_counter() - start
    print(f"\ncentre_splits on the bundled table: {moved} splits moved in {cost:.2f} s = {cost / fit:.3f}x "
          f"one XGBoost fit ({fit:.1f} s)")


def accuracy(X: np.ndarray, labels: np.ndarray, groups: np.ndarray, seeds: int, name: str) -> None:
    from sklearn.model_selection import StratifiedGroupKFold

    from hybridtmd.model.split_points import centre_splits

    y = pd.factorize(labels, sort=True)[0]
    rows = []
    for seed in range(seeds):
        for train, test in StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(X, y, groups):
            head = xgboost_head(X[train], y[train], centred=False)
            for centred in (False, True):  # one fit: centring changes split points only
                if centred:
                    centre_splits(head, X[train])
                rows.append({"seed": seed, "centred": centred, "accuracy": float(np.mean(
                    head.predict(X[test]) == y[test]))})
    frame = pd.DataFrame(rows)
    plain, centred = (frame[frame.centred == c]["accuracy"].to_numpy() for c in (False, True))
    diff = centred - plain
    print(f"\n{name}: XGBoost head accuracy over {len(plain)} grouped folds ({seeds} shuffles x 5)\n"
          f"  splits as fitted {plain.mean():.3f} ± {plain.std(ddof=1):.3f}; centred {centred.mean():.3f} ± "
          f"{centred.std(ddof=1):.3f}; centred - as fitted {diff.mean():+.4f} ± {diff.std(ddof=1):.4f} "
          f"(range {diff.min():+.3f} .. {diff.max():+.3f})")


def float64_cost() -> None:
    """The alternative mechanism's price: the same forward in float64 (bitwise portable once
    rounded to float32, since its rounding errors are ~1e-16) against float32."""
    import torch

    from hybridtmd.embeddings import CNNEmbedder

    model = CNNEmbedder(device="cpu").get_model().eval()
    x = torch.rand(32, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        model(x)  # warm-up
        start = time.perf_counter()
        single = model(x)
        t32 = time.perf_counter() - start
        model64 = model.double()  # the shared model: this process builds no other embedder afterwards
        model64(x[:2].double())
        start = time.perf_counter()
        double = model64(x.double())
        t64 = time.perf_counter() - start
    print(f"float64 forward of 32 inputs: {t64:.2f} s vs float32 {t32:.2f} s = {t64 / t32:.2f}x "
          f"(max |float32 - float64| {float((single.double() - double).abs().max()):.2g})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--float64-cost", action="store_true", help="only time a float64 forward against float32")
    args = parser.parse_args()
    if args.float64_cost:
        float64_cost()
        return
    from hybridtmd.datasets import load_example_dataset

    data = load_example_dataset()
    labels, groups = np.asarray(data.labels), np.asarray(data.groups)
    with tempfile.TemporaryDirectory() as folder:
        frames, forward = tables(Path(folder))
    print("embedding forward of 200 images at 224 px: " + ", ".join(
        f"{k} {v:.2f} s ({v / forward['default']:.2f}x the default)" for k, v in forward.items())
        + "; centred splits leave the forward as it is (no pinned ISA, no float64)")
    latent = [c for c in frames["default"].columns if c.startswith("latent__")]
    for isa, frame in frames.items():
        if isa != "default":
            gap = np.abs(frame[latent].to_numpy(np.float64) - frames["default"][latent].to_numpy(np.float64))
            print(f"embedding |difference| {isa} vs default: max {gap.max():.2g}, median {np.median(gap):.2g}")
    cross_isa(frames, labels, groups)
    centring_cost(frames["default"].to_numpy(np.float64), pd.factorize(labels, sort=True)[0])
    if args.skip_accuracy:
        return
    from hybridtmd.model import latent_table

    with np.load(PAPER, allow_pickle=False) as paper:
        accuracy(latent_table(paper["X"]).to_numpy(np.float64), paper["y"].astype(str), paper["groups"].astype(str),
                 args.seeds, "paper embeddings (1026 real images)")
    accuracy(frames["default"].to_numpy(np.float64), labels, groups, args.seeds, "bundled set (200 images)")


if __name__ == "__main__":
    main()

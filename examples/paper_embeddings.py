"""The same estimator on a precomputed feature table: the paper's frozen ResNet18 embeddings of
1026 real AFM images (``data/paper_embeddings``, MIT licence, see its README).

Cross-validates the embeddings-only ``HybridClassifier`` with the SVM head (C tuned by an inner
grouped CV of each training fold) on StratifiedGroupKFold(5) folds by sample, once; then fits
the final model and predicts a few images. The full benchmark (three repeats, XGBoost and
logistic-regression references, low-data modality) is ``benchmarks/bench_paper_embeddings.py``.

    python examples/paper_embeddings.py [--out outputs]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hybridtmd.evaluation import evaluate
from hybridtmd.model import HybridClassifier, latent_table

NPZ = Path(__file__).resolve().parent.parent / "data" / "paper_embeddings" / "mocvd1_center_resnet18_imagenet.npz"


def main(out: Path, quick: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with np.load(NPZ, allow_pickle=False) as data:
        # --quick: every third sample (the test suite's run)
        keep = np.isin(data["groups"], np.unique(data["groups"])[::3]) if quick else slice(None)
        X, y, groups = latent_table(data["X"][keep]), data["y"][keep].astype(str), data["groups"][keep].astype(str)
    print(f"{len(y)} real AFM images of {len(set(groups))} samples, {X.shape[1]} latent columns")

    model = HybridClassifier(features=None, classifier="svm")
    result = evaluate({"hybrid (svm head)": model}, X, y, groups)
    result.folds.to_csv(out / "paper_embeddings_folds.csv", index=False)
    print("grouped CV, StratifiedGroupKFold(5) by sample, one shuffle (seed 0):")
    print(result.format(("accuracy", "balanced_accuracy", "macro_f1")))
    print(result.confusion["hybrid (svm head)"].to_string())

    final = model.fit(X, y, groups=groups)
    print(f"final model: C = {final.classifier_.best_C_} chosen by inner grouped CV; "
          f"first 3 images -> {final.predict(X.iloc[:3]).tolist()} (true {y[:3].tolist()})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs"))
    parser.add_argument("--quick", action="store_true", help="every third sample")
    args = parser.parse_args()
    main(args.out, args.quick)

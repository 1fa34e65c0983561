"""scikit-learn style use of the hybrid classifier on the bundled synthetic data.

Holds out a fifth of the *samples* (never images of one sample on both sides), fits
``HybridClassifier`` (physical descriptors + EfficientNet-Lite0 embeddings -> XGBoost) on the
rest, predicts the held-out images, saves the model (JSON + npz, no pickle), loads it back and
checks that the loaded model predicts the same. Also shows the feature groups the explanations
use and the out-of-distribution flag on a surface no training sample looks like.

    python examples/fit_predict.py [--out outputs] [--quick]

``--quick``: every fourth sample, 64 px CNN inputs and a 60-tree XGBoost head (the test suite's run).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import classification_report
from sklearn.model_selection import GroupShuffleSplit

from hybridtmd.datasets import load_example_dataset
from hybridtmd.embeddings import CNNEmbedder
from hybridtmd.io import AFMImage
from hybridtmd.model import HybridClassifier, HybridFeatures, default_head


def main(out: Path, quick: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_example_dataset()
    if quick:
        samples = sorted(set(dataset.groups))[::4]
        dataset = dataset.subset([i for i, g in enumerate(dataset.groups) if g in samples])
    report = dataset.load(on_error="skip")
    images = report.images
    labels, groups = dataset.labels[report.indices], dataset.groups[report.indices]

    train, test = next(GroupShuffleSplit(n_splits=1, test_size=0.2, random_state=0).split(images, labels, groups))
    assert not set(groups[train]) & set(groups[test])
    features = HybridFeatures(embedder=CNNEmbedder(input_size=64)) if quick else "default"
    head = default_head().set_params(n_estimators=60) if quick else "auto"
    model = HybridClassifier(features, classifier=head, calibration="temperature")
    model.fit([images[i] for i in train], labels[train], groups=groups[train])
    print(f"fitted on {len(train)} images of {len(set(groups[train]))} samples; {model.n_features_in_} features:")
    for group, columns in model.feature_groups_.items():
        print(f"  {group:<9} {len(columns):>5}  e.g. {columns[0]}")
    print(f"temperature {model.temperature_:.2f}; OOD threshold {model.ood_threshold_:.3f}")

    held_out = [images[i] for i in test]
    predicted = model.predict(held_out)
    print(f"held-out samples: accuracy {np.mean(predicted == labels[test]):.3f} "
          f"on {len(test)} images of {len(set(groups[test]))} samples (one split; see `hybridtmd evaluate` for CV)")
    print(classification_report(labels[test], predicted, zero_division=0))

    model.save(out / "model")
    loaded = HybridClassifier.load(out / "model")
    assert np.array_equal(loaded.predict_proba(held_out), model.predict_proba(held_out))
    print(f"saved to and reloaded from {out / 'model'}: identical probabilities")

    # a surface unlike any TMD film in the training set: white noise of 20 nm rms
    noise = AFMImage(np.random.default_rng(0).normal(0, 20, (128, 128)), (10.0, 10.0), source="noise.tif")
    frame = loaded.predict_frame([held_out[0], noise], index=[held_out[0].name, "noise.tif"])
    print(frame[["label", "confidence", "ood_score", "out_of_distribution"]].round(3).to_string())
    frame.to_csv(out / "fit_predict_predictions.csv")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs"))
    parser.add_argument("--quick", action="store_true", help="every fourth sample, 64 px CNN inputs")
    args = parser.parse_args()
    main(args.out, args.quick)

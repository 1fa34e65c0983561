"""Research probe for issue 27 (scratch; not the final benchmark): per paper-protocol setting, fit
the SVM head and the discriminant head once, keep their test scores, and score combinations
offline. Same folds and caps as evaluate_low_data(protocol="paper")."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from hybridtmd.evaluation.modalities import PAPER_CLASS_ORDER, newest_class_cap
from hybridtmd.model import HybridClassifier, latent_table
from hybridtmd.splits import grouped_splits

NPZ = Path("/work/shared/data/paper_embeddings/mocvd1_center_resnet18_imagenet.npz")


def main(seeds: list[int], out: Path, auto: bool = False) -> None:
    with np.load(NPZ, allow_pickle=False) as data:
        X, y, groups = latent_table(data["X"]), data["y"].astype(str), data["groups"].astype(str)
    records = []
    for seed in seeds:
        splits = grouped_splits(y, groups, None, n_repeats=1, random_state=seed)
        for split in splits:
            for k in (3, 4, 5):
                order = list(PAPER_CLASS_ORDER[:k])
                keep = np.isin(y, order)
                train_k, test = split.train[keep[split.train]], split.test[keep[split.test]]
                for cap in (None, 16, 8):
                    rng = np.random.default_rng([seed, split.repeat, split.fold, k, cap or 0])
                    train = newest_class_cap(train_k, y, groups, order[k - 1], cap, rng)
                    rec = {"seed": seed, "fold": split.fold, "k": k, "cap": cap or 0, "test": test, "train": train}
                    t = time.perf_counter()
                    if auto:
                        model = HybridClassifier(features=None, ood_neighbors=None).fit(
                            X.iloc[train], y[train], groups=groups[train])
                        rec["auto_choice"] = model.head_selection_["choice"]
                        rec["auto_proba"] = model.predict_proba(X.iloc[test])
                        rec["auto_pred"] = model.predict(X.iloc[test])
                        rec["auto_s"] = time.perf_counter() - t
                        records.append(rec)
                        print(seed, split.fold, k, cap, rec["auto_choice"], f"{rec['auto_s']:.1f}s", flush=True)
                        continue
                    svm = HybridClassifier(features=None, classifier="svm", ood_neighbors=None).fit(
                        X.iloc[train], y[train], groups=groups[train])
                    rec["svm_classes"] = svm.classes_
                    rec["svm_dec"] = svm.classifier_.decision_function(X.iloc[test].to_numpy())
                    rec["svm_proba"] = svm.predict_proba(X.iloc[test])
                    rec["svm_pred"] = svm.predict(X.iloc[test])
                    rec["svm_s"] = time.perf_counter() - t
                    t = time.perf_counter()
                    lda = HybridClassifier(features=None, classifier="discriminant", ood_neighbors=None).fit(
                        X.iloc[train], y[train], groups=groups[train])
                    rec["lda_dec"] = lda.classifier_.decision_function(X.iloc[test].to_numpy())
                    rec["lda_s"] = time.perf_counter() - t
                    records.append(rec)
                    print(seed, split.fold, k, cap, f"svm {rec['svm_s']:.1f}s lda {rec['lda_s']:.1f}s", flush=True)
        np.save(out, np.array(records, dtype=object), allow_pickle=True)


if __name__ == "__main__":
    main([int(s) for s in sys.argv[2:] if s != "auto"], Path(sys.argv[1]), "auto" in sys.argv)

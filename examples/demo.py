"""The main job, end to end on the bundled synthetic data (``make demo``).

Load the sample-grouped dataset -> level every image -> per-class gallery and dataset summary ->
physical descriptors with a per-class summary (median and IQR, physical units) -> hybrid feature
table (descriptors + EfficientNet-Lite0 embeddings) -> grouped cross-validation of the hybrid
classifier and its two halves on identical folds (``evaluation/summary.md``, figure, per-fold
CSV) -> the final model trained on every image and saved without pickle (``model/``) ->
predictions with out-of-distribution flags for a few files (``predictions.csv``) -> explanations
of held-out predictions (out-of-fold models, folds grouped by sample): confusion matrix, attribution
per feature group, latent maps, nearest training examples (``explain/report.html``).

``--quick`` runs the same chain on five samples per class with 64 px CNN inputs, a 60-tree XGBoost
head everywhere (no ``auto`` selection), one shuffle and two image cards (the test suite's check
that the demo works; ``make demo`` runs it in full).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from hybridtmd.datasets import load_example_dataset
from hybridtmd.descriptors import DescriptorExtractor, list_descriptors
from hybridtmd.embeddings import CNNEmbedder
from hybridtmd.evaluation import ablation, plot_confusion, plot_evaluation
from hybridtmd.io.figures import save_class_gallery
from hybridtmd.model import HybridClassifier, HybridFeatures, default_head
from hybridtmd.preprocess import LevelConfig, Preprocessor
from hybridtmd.reporting import write_held_out_report


def main(out: Path, quick: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_example_dataset()
    if quick:
        dataset = dataset.subset(samples_per_class(dataset, 5))
    # one embedder for the evaluation table and the final model (64 px inputs in quick mode), and
    # the XGBoost head of the ablation and the held-out report (60 trees in quick mode)
    embedder = CNNEmbedder(input_size=64) if quick else CNNEmbedder()
    xgboost = default_head().set_params(n_estimators=60) if quick else "xgboost"
    print(f"dataset: {len(dataset)} images, {len(set(dataset.groups))} samples, classes {dataset.classes}")

    report = dataset.load(on_error="skip")
    for path, reason in report.errors:
        print(f"skipped {path}: {reason}")
    levelled = Preprocessor(LevelConfig()).fit_transform(report.images)

    rows = []
    labels, groups = dataset.labels[report.indices], dataset.groups[report.indices]
    for image, label, group in zip(levelled, labels, groups, strict=True):
        w, h = image.size_nm
        rows.append({"label": label, "group": group, "scan_um": w / 1000, "pixel_nm": image.pixel_size_nm[0],
                     "rms_nm": float(np.std(image.height)), "p2v_nm": float(np.ptp(image.height))})
    table = pd.DataFrame(rows)
    summary = table.groupby("label").agg(
        images=("group", "size"), samples=("group", "nunique"), scan_um=("scan_um", "mean"),
        rms_nm=("rms_nm", "mean"), p2v_nm=("p2v_nm", "mean"),
    ).round(3)
    summary.to_csv(out / "dataset_summary.csv")
    print(summary.to_string())

    save_class_gallery(levelled, labels, out / "gallery.png", per_class=4, classes=dataset.classes)

    # images are levelled already: the extractor must not level them a second time
    extractor = DescriptorExtractor(level_images=False, n_jobs=2, progress=False)
    descriptors, undefined = extractor.fit(levelled).transform_with_reasons(levelled)
    descriptors.insert(0, "label", labels)
    descriptors.insert(1, "group", groups)
    descriptors.to_csv(out / "descriptors.csv", index=False)
    by_class = descriptors.drop(columns="group").groupby("label")
    stats = {"median": by_class.median(), "iqr": by_class.quantile(0.75) - by_class.quantile(0.25)}
    summary_table = pd.concat(stats, axis=1).T.swaplevel().sort_index()  # rows (descriptor, stat)
    units = list_descriptors().set_index("name")["unit"]
    summary_table.insert(0, "unit", [units.get(name, "") for name, _ in summary_table.index])
    summary_table.to_csv(out / "descriptor_summary_by_class.csv")
    print(f"{descriptors.shape[1] - 2} descriptors per image; {len(undefined)} undefined values")
    highlights = [c for c in ("grain_density_per_um2", "sq_nm", "coverage_fraction") if c in descriptors]
    if highlights:
        print(by_class[highlights].median().round(3).to_string())
    print(f"wrote {out / 'gallery.png'}, {out / 'dataset_summary.csv'}, {out / 'descriptors.csv'} and "
          f"{out / 'descriptor_summary_by_class.csv'}")

    # hybrid table once (images are levelled), then every input on identical sample-grouped folds,
    # under one head (XGBoost) so that the rows differ only in their input
    table = HybridFeatures(level_images=False, embedder=embedder).fit_transform(levelled)
    n_repeats = 1 if quick else 2
    evaluation = ablation(HybridClassifier(features=None, classifier=xgboost), table, labels, groups,
                          n_repeats=n_repeats)
    write_evaluation(evaluation, out / "evaluation", len(levelled), len(set(groups)), n_repeats)

    # the final model levels its input itself, so it predicts straight from AFM files
    final_head = xgboost if quick else "auto"  # quick: the small head; in full, the head auto picks
    model = HybridClassifier(HybridFeatures(embedder=embedder), classifier=final_head).fit(report.images, labels,
                                                                                         groups=groups)
    summary = evaluation.summary().loc["hybrid"]
    model.save(out / "model", metrics={k: float(summary[(k, "mean")]) for k in ("accuracy", "macro_f1")})
    predictions = model.predict_frame(report.images[:10], index=[im.name for im in report.images[:10]])
    predictions.insert(0, "true_label", labels[:10])
    predictions.round(4).to_csv(out / "predictions.csv", index_label="image")
    print(f"model saved to {out / 'model'}; predictions of 10 training files in {out / 'predictions.csv'}")

    # why, on images the model never saw: out-of-fold models (folds grouped by sample) predict and
    # explain every image; the report leads with their confusion matrix and the attribution per
    # feature group, then one card per image (latent maps, group waterfall, nearest examples)
    # (the XGBoost head: per-feature TreeSHAP drill-downs on every card; any head works)
    html = write_held_out_report(HybridClassifier(HybridFeatures(embedder=embedder), classifier=xgboost),
                                 report.images, labels, groups, out / "explain", table=table,
                                 max_cards=2 if quick else 8, title="Why the model decides: held-out images")
    print(f"explanations of out-of-fold predictions: {html}")


def samples_per_class(dataset, n: int) -> list[int]:
    """Indices of the images of the first ``n`` samples (sorted ids) of every class."""
    keep = {g for c in dataset.classes for g in sorted({g for g, lab in zip(dataset.groups, dataset.labels,
                                                                             strict=True) if lab == c})[:n]}
    return [i for i, g in enumerate(dataset.groups) if g in keep]


def write_evaluation(evaluation, folder: Path, n_images: int, n_samples: int, n_repeats: int) -> None:
    """summary.md (Markdown table), evaluation.png (accuracy bars + confusion) and folds.csv."""
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    evaluation.folds.to_csv(folder / "folds.csv", index=False)
    n_folds = evaluation.folds.groupby("model").size().iloc[0]
    text = (f"# Grouped cross-validation on the bundled synthetic set\n\n{n_images} images, {n_samples} samples; "
            f"StratifiedGroupKFold(5) by sample x {n_repeats} shuffles ({n_folds} folds per model, identical for all); "
            f"XGBoost head; mean ± std over folds.\n\n{evaluation.to_markdown()}\n")
    (folder / "summary.md").write_text(text, encoding="utf-8")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    plot_evaluation(evaluation, ax=axes[0])
    plot_confusion(evaluation.confusion["hybrid"], ax=axes[1], title="hybrid: confusion (all folds)")
    fig.savefig(folder / "evaluation.png", dpi=120)
    plt.close(fig)
    print(evaluation.format(("accuracy", "macro_f1")))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs"))
    parser.add_argument("--quick", action="store_true", help="five samples per class, 64 px CNN inputs")
    args = parser.parse_args()
    main(args.out, args.quick)

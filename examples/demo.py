"""The main job, end to end on the bundled synthetic data (``make demo``).

Stages available so far: load the sample-grouped dataset -> level every image -> save a
per-class gallery of levelled height maps and a dataset summary -> extract the physical
descriptors of every image and write them with a per-class summary (median and IQR of each
descriptor, physical units) to the output folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from hybridtmd.datasets import load_example_dataset
from hybridtmd.descriptors import DescriptorExtractor, list_descriptors
from hybridtmd.plotting import save_class_gallery
from hybridtmd.preprocess import LevelConfig, Preprocessor


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_example_dataset()
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

    save_class_gallery(dataset, out / "gallery.png", per_class=4)

    # images are levelled already: the extractor must not level them a second time
    extractor = DescriptorExtractor(level=False, n_jobs=2, progress=False)
    descriptors = extractor.fit_transform(levelled)
    descriptors.insert(0, "label", labels)
    descriptors.insert(1, "group", groups)
    descriptors.to_csv(out / "descriptors.csv", index=False)
    by_class = descriptors.drop(columns="group").groupby("label")
    stats = {"median": by_class.median(), "iqr": by_class.quantile(0.75) - by_class.quantile(0.25)}
    summary_table = pd.concat(stats, axis=1).T.swaplevel().sort_index()  # rows (descriptor, stat)
    units = list_descriptors().set_index("name")["unit"]
    summary_table.insert(0, "unit", [units.get(name, "") for name, _ in summary_table.index])
    summary_table.to_csv(out / "descriptor_summary_by_class.csv")
    print(f"{descriptors.shape[1] - 2} descriptors per image; {len(extractor.reasons_)} undefined values")
    highlights = [c for c in ("grain_density_per_um2", "sq_nm", "coverage_fraction") if c in descriptors]
    if highlights:
        print(by_class[highlights].median().round(3).to_string())
    print(f"wrote {out / 'gallery.png'}, {out / 'dataset_summary.csv'}, {out / 'descriptors.csv'} and "
          f"{out / 'descriptor_summary_by_class.csv'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs"))
    main(parser.parse_args().out)

"""Peak memory of predicting a folder: in passes of ``PASS_SIZE`` files (what ``hybridtmd
predict`` and the napari Batch widget do, ``hybridtmd.model.predicting.predict_files``) against
one pass over every file (what ``predict`` did before: every image in memory at once).

Writes ``--files`` synthetic float32 TIFFs of ``--size`` px, fits a descriptor-only model (areal
family: the pass structure is what is measured, not the CNN), then predicts the folder both ways
under ``tracemalloc`` (numpy's arrays are traced). Prints the peaks in MB and their ratio, and
checks that the two tables are equal.

    python benchmarks/bench_predict_memory.py [--files 64] [--size 512]
"""

from __future__ import annotations

import argparse
import tempfile
import tracemalloc
from pathlib import Path


def peak_mb(run) -> tuple[float, object]:
    tracemalloc.start()
    try:
        result = run()
        return tracemalloc.get_traced_memory()[1] / 1e6, result
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args(argv)

    import pandas as pd

    from hybridtmd.datasets import make_synthetic_dataset
    from hybridtmd.descriptors import DescriptorExtractor
    from hybridtmd.io import readable_files, save_image
    from hybridtmd.model import HybridClassifier, HybridFeatures, default_head
    from hybridtmd.model.predicting import PASS_SIZE, predict_files

    data = make_synthetic_dataset(n_samples=args.files // 2, images_per_sample=2, size_px=args.size,
                                  scan_size_um=(5.0, 6.0), materials=["MoS2", "WSe2"], seed=0)
    features = HybridFeatures(descriptors=DescriptorExtractor(families=["areal"]), embedder=None)
    head = default_head(0, n_jobs=1).set_params(n_estimators=20)
    model = HybridClassifier(features=features, classifier=head, ood_neighbors=None).fit(
        data.images, data.labels, groups=data.groups)
    with tempfile.TemporaryDirectory() as tmp:
        for i, image in enumerate(data.images):
            save_image(image, Path(tmp) / f"scan{i:03d}.tif")
        del data
        paths = readable_files(tmp)
        passes, (table, _) = peak_mb(lambda: predict_files(model, paths))
        whole, (reference, _) = peak_mb(lambda: predict_files(model, paths, pass_size=len(paths)))
    pd.testing.assert_frame_equal(table, reference)
    print(f"{len(paths)} files of {args.size}^2 px: peak traced memory {passes:.0f} MB in passes of {PASS_SIZE}, "
          f"{whole:.0f} MB in one pass; ratio one pass / passes = {whole / passes:.2f} (tables equal)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

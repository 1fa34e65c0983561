"""Descriptor extraction scaling: images/s vs number of workers (joblib, 1 and 2) and vs image size
(128² -> 1024²), with the scaling ratios.

* workers: the same batch of 256² images through ``DescriptorExtractor(n_jobs=w)``; ratio =
  throughput(w) / throughput(1) (ideal: w). Worker start-up (loky) is excluded by a warm-up run.
* size: one worker, ms per image at each side; ratio = time / time at 128² next to the pixel
  ratio (linear cost: the two agree).

Run: ``python benchmarks/bench_scale.py [--images 8] [--families areal,spectral,grains,texture,paper]``.
BLAS/OpenMP threads are pinned to 1 so a worker is a core. The Dask path (``hybridtmd.model.store``,
``hybridtmd extract --store DIR --scheduler dask``) runs the same per-image work in partitions;
its measured rates are in ``docs/scale.md``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

from hybridtmd.datasets import make_synthetic_dataset  # noqa: E402
from hybridtmd.descriptors import DescriptorExtractor  # noqa: E402
from hybridtmd.preprocess import level  # noqa: E402


def _images(n: int, side: int):
    data = make_synthetic_dataset(n_samples=max(n, 5), images_per_sample=1, size_px=side, seed=0)
    return [level(im) for im in data.images[:n]]


def _seconds(extractor: DescriptorExtractor, images, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        extractor.fit_transform(images)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--families", default=None, help="comma-separated families (default: all)")
    parser.add_argument("--sizes", default="128,256,512,1024")
    args = parser.parse_args()
    families = None if args.families is None else args.families.split(",")

    print(f"workers (joblib), {args.images} images of 256², families {families or 'default'}")
    images = _images(args.images, 256)
    base = None
    for workers in (1, 2):
        extractor = DescriptorExtractor(families=families, level_images=False, n_jobs=workers, progress=False)
        extractor.fit_transform(images[:2])  # warm-up: worker start-up and imports
        rate = len(images) / _seconds(extractor, images, args.repeats)
        base = base or rate
        print(f"  {workers} worker(s): {rate:7.2f} images/s   ratio to 1 worker {rate / base:5.2f} (ideal {workers})")

    print("image size, 1 worker")
    sizes = [int(s) for s in args.sizes.split(",")]
    ref = None
    for side in sizes:
        n = args.images if side <= 256 else 2  # large images: 2 are enough for a stable time
        batch = _images(n, side)
        extractor = DescriptorExtractor(families=families, level_images=False, n_jobs=1, progress=False)
        per_image = _seconds(extractor, batch, args.repeats) / len(batch)
        ref = ref or per_image
        print(f"  {side:5d}²: {1e3 * per_image:9.1f} ms/image  {1 / per_image:7.2f} images/s   "
              f"time ratio to {sizes[0]}² {per_image / ref:6.1f}  (pixel ratio {(side / sizes[0]) ** 2:5.0f})")


if __name__ == "__main__":
    main()

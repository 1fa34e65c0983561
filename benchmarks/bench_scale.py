"""Descriptor extraction scaling: images/s vs number of workers (joblib, 1 and 2) and vs image size
(128² -> 1024²), with the scaling ratios.

* workers: the same batch of 256² images through ``DescriptorExtractor(n_jobs=w)``; ratio =
  throughput(w) / throughput(1) (ideal: w). Worker start-up (loky) is excluded by a warm-up run.
* size: one worker, ms per image at each side; ratio = time / time at 128² next to the pixel
  ratio (linear cost: the two agree).

* pipeline (``--pipeline N``): N generated 256² images written as TIFF, then through the feature
  store with embeddings (``extract_to_store(..., embedder=CNNEmbedder())``) and streaming
  prediction (``predict_to_store``) on a LocalCluster of 1 and then 2 single-threaded worker
  processes: images/s per stage, the peak RSS of each worker (``ru_maxrss`` after the stage;
  workers are fresh per cluster) and the 2-worker/1-worker speed-up. The model predicting is an
  XGBoost head fitted on the 1-worker store's rows (``fit_from_store``), outside the timings.

Run: ``python benchmarks/bench_scale.py [--images 8] [--families areal,spectral,grains,texture,paper]``,
``python benchmarks/bench_scale.py --pipeline 200 [--partition-size 32] [--skip-descriptors]``.
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
    parser.add_argument("--pipeline", type=int, default=0, help="N images of 256² through store + predict")
    parser.add_argument("--partition-size", type=int, default=32)
    parser.add_argument("--skip-descriptors", action="store_true", help="only the --pipeline part")
    args = parser.parse_args()
    families = None if args.families is None else args.families.split(",")
    if args.pipeline:
        pipeline(args.pipeline, args.partition_size)
    if args.skip_descriptors:
        return

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


def _write_images(folder, n: int):
    """N synthetic 256² TIFFs in batches of 100 (a whole set in memory would be 8 bytes/pixel x N)."""
    from hybridtmd.datasets import write_synthetic_dataset
    from hybridtmd.io import Dataset

    paths, labels, groups = [], [], []
    for start in range(0, n, 100):
        size = min(100, n - start)
        ds = write_synthetic_dataset(folder / f"batch{start // 100:04d}", n_samples=max(5, size // 2),
                                     images_per_sample=2, size_px=256, seed=start)
        paths += ds.paths[:size]
        labels += list(ds.labels[:size])
        groups += [f"b{start}-{g}" for g in ds.groups[:size]]
    return Dataset(paths, labels, groups)


def _memory_mb(client) -> str:
    """Each worker's peak RSS and, on Linux, its present private memory (USS: pages no other
    process shares; RSS also counts the shared torch/numpy libraries once per process)."""
    import resource

    def sizes() -> tuple[float, float]:
        private = float("nan")
        try:
            with open("/proc/self/smaps_rollup") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
            private = sum(int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty")) / 1024
        except (OSError, KeyError, ValueError):
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, private  # kB on Linux

    found = sorted(client.run(sizes).values())
    return (f"peak RSS per worker {', '.join(f'{r:.0f}' for r, _ in found)} MB, private now "
            f"{', '.join(f'{u:.0f}' for _, u in found)} MB")


def pipeline(n: int, partition_size: int) -> None:
    """extract + embed into a store, then predict by partitions, on LocalClusters of 1 and 2 workers."""
    import tempfile
    from pathlib import Path

    import distributed

    from hybridtmd.embeddings import CNNEmbedder
    from hybridtmd.model import HybridClassifier
    from hybridtmd.model.store import extract_to_store, fit_from_store, predict_to_store

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        ds = _write_images(tmp / "images", n)
        print(f"pipeline: {n} images of 256² written in {time.perf_counter() - start:.1f} s; partitions of "
              f"{partition_size}; default families + EfficientNet-Lite0 embeddings (224 px)")
        rates: dict[str, dict[int, float]] = {"extract+embed": {}, "predict": {}}
        for workers in (1, 2):
            cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                               dashboard_address=None)
            with cluster, distributed.Client(cluster) as client:
                store = tmp / f"store{workers}"
                start = time.perf_counter()
                report = extract_to_store(ds.paths, store, embedder=CNNEmbedder(), partition_size=partition_size,
                                          client=client, progress=False)
                seconds = time.perf_counter() - start
                assert report.complete, report.failed
                rates["extract+embed"][workers] = n / seconds
                print(f"  {workers} worker(s) extract+embed: {n / seconds:6.2f} images/s ({seconds:.0f} s), "
                      f"{_memory_mb(client)}")
                if workers == 1:
                    model, _ = fit_from_store(HybridClassifier(classifier="xgboost"), store, ds)
                    model.save(tmp / "model")
                start = time.perf_counter()
                report = predict_to_store(tmp / "model", ds.paths, tmp / f"pred{workers}",
                                          partition_size=partition_size, client=client, progress=False)
                seconds = time.perf_counter() - start
                assert report.complete, report.failed
                rates["predict"][workers] = n / seconds
                print(f"  {workers} worker(s) predict:       {n / seconds:6.2f} images/s ({seconds:.0f} s), "
                      f"{_memory_mb(client)} (peak since the cluster started)")
        for stage, by_workers in rates.items():
            print(f"  speed-up 2/1 workers, {stage}: {by_workers[2] / by_workers[1]:.2f} (ideal 2)")


if __name__ == "__main__":
    main()

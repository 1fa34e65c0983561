"""CPU time of the descriptor pass per family on levelled 512² images (issue 30, item 4).

Prints, for each default family and for the whole default set on one shared
:class:`~hybridtmd.descriptors.core.Surface`, the CPU seconds per image
(``time.process_time``, single process, BLAS/OpenMP threads pinned to 1) and images/s/core
(1 / CPU s). CPU time rather than wall time because the development machine is shared with
other jobs: another process's load lengthens wall time but not this process's CPU time.
Goal: the full default set >= 15 images/s/core at 512² (<= 0.067 CPU s per image).

The ``DescriptorExtractor`` row is the same default set through
``DescriptorExtractor(level_images=False, n_jobs=1).transform`` of the batch, per image (the table
and the extractor's bookkeeping included). A family timed alone pays for the Surface arrays it shares
with the others (normalised image, reference grid, smoothing...); the ``ALL`` row pays for them
once, so the rows do not add up.

Run: ``python benchmarks/bench_descriptor_speed.py [--images 5] [--repeats 3] [--size 512]
[--profile] [--routines]`` (``--profile`` prints the top cProfile entries of the full set;
``--routines`` times the re-implemented library routines against the library's).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from hybridtmd.datasets import make_synthetic_dataset  # noqa: E402
from hybridtmd.descriptors import DescriptorConfig, DescriptorExtractor  # noqa: E402
from hybridtmd.descriptors.core import Surface  # noqa: E402
from hybridtmd.descriptors.registry import resolve_families  # noqa: E402
from hybridtmd.preprocess import level  # noqa: E402

GOAL_IMAGES_PER_S = 15.0


def cpu_per_image(images, func, repeats: int) -> float:
    """Mean over images of the least CPU time of ``repeats`` calls of ``func(image)``."""
    best = []
    for im in images:
        times = []
        for _ in range(repeats):
            t0 = time.process_time()
            func(im)
            times.append(time.process_time() - t0)
        best.append(min(times))
    return float(np.mean(best))


def routines(grey_images, repeats: int) -> None:
    """CPU ms per image of each re-implemented library routine and of the library's, on the
    paper's normalised images (the routines' equality is tested in tests/test_descriptors_speed.py)."""
    from skimage.feature import canny as skimage_canny
    from skimage.feature import graycomatrix, graycoprops

    from hybridtmd.descriptors.fast_filters import canny
    from hybridtmd.descriptors.fast_glcm import glcm_properties

    props = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
    u8 = [np.rint(g * 255).astype(np.uint8) for g in grey_images]
    glcms = [graycomatrix(u, [1], [0], levels=256, symmetric=True, normed=True) for u in u8]
    cases = [("canny(sigma=0.3)", grey_images, lambda g: skimage_canny(g, 0.3), lambda g: canny(g, 0.3)),
             ("graycoprops x 6", glcms, lambda m: [graycoprops(m, p) for p in props],
              lambda m: glcm_properties(m, props))]
    print(f"{'routine':<20}{'library ms':>12}{'hybridtmd ms':>14}{'ratio':>8}")
    for name, inputs, library, ours in cases:
        theirs, mine = cpu_per_image(inputs, library, repeats), cpu_per_image(inputs, ours, repeats)
        print(f"{name:<20}{theirs * 1e3:>12.2f}{mine * 1e3:>14.2f}{theirs / mine:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5, help="images (one per class)")
    parser.add_argument("--repeats", type=int, default=3, help="CPU-time repeats per image (least kept)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--profile", action="store_true", help="cProfile the full default set")
    parser.add_argument("--routines", action="store_true",
                        help="time the re-implemented library routines against the library instead")
    args = parser.parse_args()
    data = make_synthetic_dataset(n_samples=max(args.images, 5), images_per_sample=1, size_px=args.size, seed=11)
    images = [level(im) for im in data.images[: args.images]]
    config = DescriptorConfig()
    families = resolve_families("default")
    wanted = [n for fam in families for n in fam.names]

    def full(im) -> None:
        surface = Surface(im, config, wanted)
        for fam in families:
            fam.compute(surface)

    for im in images:  # warm caches (per-shape transfer functions, imports)
        full(im)
    if args.routines:
        routines([Surface(im, config).normalised for im in images], args.repeats)
        return
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for im in images:
            full(im)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
        return
    print(f"{args.size}² px, {len(images)} levelled images, CPU time (shared machine), OMP_NUM_THREADS="
          f"{os.environ['OMP_NUM_THREADS']}")
    print(f"{'family':<20}{'CPU s/image':>12}{'images/s/core':>15}")
    for fam in families:
        seconds = cpu_per_image(images, lambda im, f=fam: f.compute(Surface(im, config, wanted)), args.repeats)
        print(f"{fam.name:<20}{seconds:>12.4f}{1 / seconds:>15.2f}")
    total = cpu_per_image(images, full, args.repeats)
    print(f"{'ALL (default set)':<20}{total:>12.4f}{1 / total:>15.2f}")
    # the same families through the extractor (its table and bookkeeping included)
    extractor = DescriptorExtractor(level_images=False, n_jobs=1, progress=False).fit(images[:1])
    through = cpu_per_image([images], extractor.transform, args.repeats) / len(images)  # one batch
    print(f"{'DescriptorExtractor':<20}{through:>12.4f}{1 / through:>15.2f}")
    verdict = "met" if 1 / total >= GOAL_IMAGES_PER_S else "NOT met"
    print(f"goal >= {GOAL_IMAGES_PER_S:g} images/s/core ({1 / GOAL_IMAGES_PER_S:.3f} CPU s/image): "
          f"{1 / total:.2f} ({verdict})")


if __name__ == "__main__":
    main()

"""Descriptor throughput per family, the cost of an extra AFM channel, and the DoG blob checks.

For 256² and 512² synthetic TMD images (levelled beforehand; 2-5 nm pixels, so the
scale-dependent families work on the 10 nm reference grid), prints for each descriptor family
of the default set and for the full default set: milliseconds per image, images per second on
one core, and the ratio of that time to one ``scipy.ndimage.gaussian_filter(image, 1)`` pass on
the same image (the memory-bound floor, which makes the numbers comparable across machines).
Levelling is timed separately. Target: full default set >= 10 images/s/core at 512².
Then the cost per image of each extra channel (``areal, spectral, texture`` of a phase map).

Last, compares ``blob_method="fast"`` (2x block mean, halved sigmas) with the 2-D detector
(``"2d"``) and with the paper's 3-D call (``"paper"``: ``blob_dog`` on H x W x 3) on the bundled
dataset and on 512² images: Pearson r of the counts and the median relative difference.

Run: ``python benchmarks/bench_descriptors.py [--images 6] [--repeats 3]``. Single-threaded
(BLAS/OpenMP threads pinned to 1) so the numbers are per core.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from hybridtmd.datasets import load_example_dataset, make_synthetic_dataset  # noqa: E402
from hybridtmd.descriptors import DescriptorConfig, DescriptorExtractor, channel_selections  # noqa: E402
from hybridtmd.descriptors.core import Surface  # noqa: E402
from hybridtmd.descriptors.paper import dog_blob_count  # noqa: E402
from hybridtmd.descriptors.registry import resolve_families  # noqa: E402
from hybridtmd.preprocess import level, normalise_height  # noqa: E402

TARGET_SIZE, TARGET_IMAGES_PER_S = 512, 10.0


def best_time(func, repeats: int) -> float:
    """Minimum wall time of ``repeats`` calls (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return min(times)


def per_image(images, func, repeats: int) -> float:
    """Mean over images of the best-of-``repeats`` time of ``func(image)``."""
    return float(np.mean([best_time(lambda im=im: func(im), repeats) for im in images]))


def bench_size(size: int, n_images: int, repeats: int, config: DescriptorConfig) -> None:
    data = make_synthetic_dataset(n_samples=max(n_images, 5), images_per_sample=1, size_px=size, seed=11)
    raw = data.images[:: max(1, len(data.images) // n_images)][:n_images]
    images = [level(im) for im in raw]
    families = resolve_families("default")
    wanted = [n for fam in families for n in fam.names]  # what the extractor asks the families for
    for im in images:  # warm caches (per-shape spectral/Gabor geometry, imports)
        for fam in families:
            fam.compute(Surface(im, config, wanted))

    def gaussian_pass() -> float:
        return per_image(images, lambda im: ndimage.gaussian_filter(im.height, 1.0), repeats)

    floor = gaussian_pass()
    print(f"\n{size}x{size} px, {len(images)} images; gaussian_filter(sigma=1) = {floor * 1e3:.2f} ms")
    print(f"{'family':<22}{'ms/image':>10}{'images/s/core':>15}{'x gaussian':>12}")

    def row(name: str, seconds: float) -> None:
        print(f"{name:<22}{seconds * 1e3:>10.1f}{1 / seconds:>15.2f}{seconds / floor:>12.1f}")

    for fam in families:
        row(fam.name, per_image(images, lambda im, f=fam: f.compute(Surface(im, config, wanted)), repeats))

    def full(im):
        surface = Surface(im, config, wanted)
        for fam in families:
            fam.compute(surface)

    total = per_image(images, full, repeats)
    row("ALL (default set)", total)
    row("levelling (default)", per_image(raw, level, repeats))
    if size == TARGET_SIZE:
        # this VM's speed drifts between runs; the Gaussian pass, measured again, shows by how much
        after = gaussian_pass()
        verdict = "met" if 1 / total >= TARGET_IMAGES_PER_S else "NOT met"
        print(f"target >= {TARGET_IMAGES_PER_S} images/s/core at {size}²: {1 / total:.2f} ({verdict}); the full "
              f"set costs {total / floor:.1f} Gaussian passes, so the target holds where a pass takes <= "
              f"{1e3 / TARGET_IMAGES_PER_S / (total / floor):.2f} ms (here {floor * 1e3:.2f} ms before the "
              f"families, {after * 1e3:.2f} ms after)")
        extra_channel(images, floor, repeats)


def extra_channel(images, floor: float, repeats: int) -> None:
    """Per-image cost of extra channels (the families :func:`channel_selections` gives a channel
    other than height): a phase channel alone through the extractor (the direct cost), and the
    extractor with height + phase + amplitude minus height alone, per extra channel (the
    difference of two larger timings: noisier on a busy machine)."""
    scans = [{"height": im, "phase": replace(im, channel="Phase"), "amplitude": replace(im, channel="Amplitude")}
             for im in images]
    selection = channel_selections(["height", "phase", "amplitude"])
    other = selection["phase"]
    height = DescriptorExtractor(progress=False, level_images=False)
    phase = DescriptorExtractor(channels={"phase": other}, level_images=False, progress=False)
    three = DescriptorExtractor(channels=selection, level_images=False, progress=False)
    t_height = per_image(images, lambda im: height.transform([im]), repeats)
    t_phase = per_image(scans, lambda scan: phase.transform([scan]), repeats)
    t_three = per_image(scans, lambda scan: three.transform([scan]), repeats)
    per_extra = (t_three - t_height) / 2
    print(f"one extra channel ({', '.join(other)}): {t_phase * 1e3:.1f} ms per image = {t_phase / floor:.1f} "
          f"Gaussian passes measured alone; {per_extra * 1e3:.1f} ms = {per_extra / floor:.1f} passes per extra "
          f"channel from height + 2 channels ({t_three * 1e3:.1f} ms) vs height only ({t_height * 1e3:.1f} ms)")


def blob_equivalence(repeats: int) -> None:
    print("\nDoG blob count: blob_method='fast' and the 2-D detector against the paper's 3-D call")
    sets = {
        "bundled 128 px": [load_example_dataset()[i] for i in range(0, 120, 4)],
        "synthetic 512 px": make_synthetic_dataset(n_samples=6, images_per_sample=1, size_px=512, seed=5).images,
    }
    for name, raw in sets.items():
        imgs = [normalise_height(level(im).height, levels=256) for im in raw]
        counts = {m: np.array([dog_blob_count(im, m) for im in imgs], float) for m in ("paper", "2d", "fast")}
        timing = {m: per_image(imgs[:2], lambda im, m=m: dog_blob_count(im, m), 1 if m == "paper" else repeats)
                  for m in counts}
        print(f"  {name:<18} n={len(imgs):<3} mean count paper {counts['paper'].mean():6.1f} 2d "
              f"{counts['2d'].mean():6.1f} fast {counts['fast'].mean():6.1f}; time paper {timing['paper'] * 1e3:.0f} "
              f"ms, 2d {timing['2d'] * 1e3:.1f} ms, fast {timing['fast'] * 1e3:.1f} ms")
        for a, b in (("fast", "2d"), ("fast", "paper"), ("2d", "paper")):
            r = np.corrcoef(counts[a], counts[b])[0, 1]
            rel = np.median(np.abs(counts[a] - counts[b]) / np.maximum(counts[b], 1))
            print(f"      {a:>4} vs {b:<5}: Pearson r = {r:.4f}, median |rel diff| = {rel:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5, help="images per size (one per class)")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (best is kept)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    args = parser.parse_args()
    config = DescriptorConfig()
    for size in args.sizes:
        bench_size(size, args.images, args.repeats, config)
    blob_equivalence(args.repeats)


if __name__ == "__main__":
    main()

"""Synthetic datasets in memory and on disk, and the bundled example dataset."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .._utils.files import atomic_path, atomic_write_text
from ..io import AFMImage, Dataset, load_dataset, save_image
from .morphology import Artefacts, SampleParameters, class_counts, sample_parameters
from .rendering import render_image


@dataclass
class SyntheticDataset:
    """In-memory synthetic dataset: images with labels, sample groups and sample parameters."""

    images: list[AFMImage]
    labels: np.ndarray
    groups: np.ndarray
    parameters: list[SampleParameters] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def make_synthetic_dataset(
    n_samples: int = 60,
    images_per_sample: int | tuple[int, int] = 2,
    *,
    size_px: int = 128,
    scan_size_um: tuple[float, float] = (1.0, 2.5),
    materials: Sequence[str] | None = None,
    artefacts: Artefacts | None = None,
    spread: float = 1.0,
    seed: int = 0,
) -> SyntheticDataset:
    """Generate a labelled, sample-grouped synthetic TMD dataset in memory.

    Parameters
    ----------
    n_samples : int
        Number of samples, split over classes in the paper's proportions (:func:`class_counts`).
    images_per_sample : int or (low, high)
        Images per sample, fixed or drawn uniformly in ``[low, high]``.
    size_px, scan_size_um :
        Image side in pixels; scan size range (µm), drawn per sample independently of class.
    materials : list of str, optional
        Subset of :data:`MATERIALS` to generate.
    artefacts : Artefacts, optional
        Instrument artefacts (default :class:`Artefacts`; ``Artefacts.none()`` for ideal scans).
    spread : float
        Scales the within-class spread of sample parameters (class overlap).
    seed : int
        Everything is a deterministic function of the arguments and this seed.
    """
    counts = class_counts(n_samples, materials)
    order = [m for m, c in counts.items() for _ in range(c)]
    root = np.random.SeedSequence(seed)
    images, labels, groups, params = [], [], [], []
    for index, (material, seq) in enumerate(zip(order, root.spawn(len(order)), strict=True)):
        rng = np.random.default_rng(seq)
        sample_id = f"{index + 1:04d}"
        p = sample_parameters(material, rng, sample_id=sample_id, scan_size_um=scan_size_um, spread=spread)
        params.append(p)
        if isinstance(images_per_sample, int):
            k = images_per_sample
        else:
            k = int(rng.integers(images_per_sample[0], images_per_sample[1] + 1))
        for j, img_seq in enumerate(seq.spawn(k)):
            name = synthetic_filename(p, j)
            image_rng = np.random.default_rng(img_seq)
            images.append(render_image(p, image_rng, size_px=size_px, artefacts=artefacts, source=name))
            labels.append(material)
            groups.append(sample_id)
    return SyntheticDataset(images, np.array(labels, dtype=object), np.array(groups, dtype=object), params)


def synthetic_filename(params: SampleParameters, image_index: int) -> str:
    """File name in the paper's convention: ``synthetic_<MATERIAL>_<scan>um_<SAMPLEID>_img<k>.tif``."""
    return f"synthetic_{params.material}_{params.scan_size_nm / 1000:.2f}um_{params.sample_id}_img{image_index}.tif"


def write_synthetic_dataset(outdir: str | Path, *, tiff_dtype: str = "float32", **kwargs) -> Dataset:
    """Generate a dataset (arguments of :func:`make_synthetic_dataset`) and write it to ``outdir``:
    one TIFF per image (nm as ``tiff_dtype``, pixel size in tags), ``manifest.csv``
    (path,label,group), and ``samples.json`` (each sample's parameters). Returns the on-disk
    :class:`Dataset`."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    data = make_synthetic_dataset(**kwargs)
    for image in data.images:
        save_image(image, outdir / image.source, tiff_dtype=tiff_dtype)
    with atomic_path(outdir / "manifest.csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "label", "group"])
            for image, label, group in zip(data.images, data.labels, data.groups, strict=True):
                writer.writerow([image.source, label, group])
    settings = {k: (asdict(v) if hasattr(v, "__dataclass_fields__") else v) for k, v in kwargs.items()}
    samples = {"generator_arguments": settings, "samples": [asdict(p) for p in data.parameters]}
    atomic_write_text(outdir / "samples.json", json.dumps(samples, indent=1))
    return load_dataset(outdir)


#: Arguments that produced the bundled ``data/synthetic_tmd`` set (see data/README.md).
BUNDLED_ARGUMENTS: dict = {"n_samples": 100, "images_per_sample": 2, "size_px": 128, "scan_size_um": (1.0, 2.5),
                           "spread": 1.0, "seed": 2024, "artefacts": None, "tiff_dtype": "float16"}


def example_data_path() -> Path:
    """Folder of the bundled synthetic dataset (``data/synthetic_tmd`` in the repository)."""
    return Path(__file__).resolve().parents[2] / "data" / "synthetic_tmd"


def load_example_dataset(path: str | Path | None = None) -> Dataset:
    """The bundled synthetic TMD dataset (200 images, 100 samples, 5 classes, 128x128 px).

    If the repository's ``data/`` folder is not there (e.g. a wheel install), the identical
    dataset is regenerated deterministically into ``path`` or ``~/.cache/hybridtmd``.
    """
    bundled = example_data_path()
    if path is None and (bundled / "manifest.csv").exists():
        return load_dataset(bundled)
    target = Path(path) if path is not None else Path.home() / ".cache" / "hybridtmd" / "synthetic_tmd"
    if not (target / "manifest.csv").exists():
        write_synthetic_dataset(target, **BUNDLED_ARGUMENTS)
    return load_dataset(target)

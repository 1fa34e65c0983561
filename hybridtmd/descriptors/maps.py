"""Where the descriptors look: the grain labels and the DoG blobs behind the counts.

The ``grains`` family counts and measures a grain segmentation, the ``paper`` and
``morphology`` families count difference-of-Gaussian blobs; these functions return those very
segmentations and blobs for one image (scikit-image style: an image in, arrays out), computed
by the code the families run (:func:`~hybridtmd.descriptors.grains.surface_grains`,
:func:`~hybridtmd.descriptors.paper.surface_blobs`) on the image levelled and resampled as the
descriptors see it. So ``grain_labels(image).count`` is the image's ``grain_count`` and
``len(blob_positions(image))`` its blob count, for the same settings.

Coordinates. Everything is in nm in the *scan's* frame: ``(0, 0)`` is the centre of the scan's
first pixel (row 0, column 0), x along columns, y along rows - napari's world coordinates of a
layer with the scan's pixel size as its scale and no translation. The ``grains`` and
``morphology`` families compute on the image resampled to ``DescriptorConfig.reference_pixel_nm``
(10 nm by default; :attr:`~hybridtmd.descriptors.core.Surface.reference`), whose grid spans the
same scanned area with other pixels: :class:`GrainLabels` carries that grid's pixel size and the
position of its first pixel centre (``origin_nm``) so that the labels lie on the scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ..io import AFMImage
from ..preprocess import LevelConfig, level
from .core import DescriptorConfig, Surface
from .grains import surface_grains
from .paper import surface_blobs

__all__ = ["BLOB_COLUMNS", "GrainLabels", "blob_positions", "grain_labels"]

#: the columns of :func:`blob_positions`
BLOB_COLUMNS = ["x_nm", "y_nm", "sigma_nm", "radius_nm"]


@dataclass(frozen=True)
class GrainLabels:
    """The grain segmentation the ``grains`` descriptors measure.

    Attributes
    ----------
    labels : ndarray of int, (rows, cols)
        0 background, 1..n grains (consecutive), on the grid the family computes on.
    pixel_size_nm : (float, float)
        (x, y) pixel size of that grid in nm (the reference pixel size, adjusted so that the grid
        spans the scan exactly).
    origin_nm : (float, float)
        (x, y) position in nm of the centre of ``labels[0, 0]`` in the scan's frame (0 when the
        grid is the scan's own).
    threshold_nm : float
        The segmentation threshold on the levelled heights (``grain_threshold_nm``; NaN for a
        flat image, which has no grains).
    """

    labels: np.ndarray
    pixel_size_nm: tuple[float, float]
    origin_nm: tuple[float, float]
    threshold_nm: float

    @property
    def count(self) -> int:
        """The number of grains (``grain_count``)."""
        return int(self.labels.max(initial=0))


def _levelled_surface(image: AFMImage, config: DescriptorConfig | None, level_images: bool,
                      level_config: LevelConfig | None) -> Surface:
    """The :class:`Surface` the families see for ``image`` (levelled as the extractor levels)."""
    if not isinstance(image, AFMImage):
        raise TypeError(f"expected an AFMImage, got {type(image).__name__} (use hybridtmd.io.load_image)")
    return Surface(level(image, level_config) if level_images else image, config or DescriptorConfig())


def _origin(scan: AFMImage, grid: Surface) -> tuple[float, float]:
    """Where the centre of ``grid``'s first pixel lies in the scan's frame: both grids start at
    the scan's edge (half a scan pixel before its first centre), so it is half the difference of
    the pixel sizes."""
    return tuple(float((g - s) / 2) for g, s in zip(grid.pixel_size_nm, scan.pixel_size_nm, strict=True))


def grain_labels(image: AFMImage, config: DescriptorConfig | None = None, *, level_images: bool = True,
                 level_config: LevelConfig | None = None) -> GrainLabels:
    """The grain label image the ``grains`` descriptors measure (``grain_count``, areas,
    diameters... ; :mod:`hybridtmd.descriptors.grains`).

    Parameters
    ----------
    image : AFMImage
        A height map in nm.
    config : DescriptorConfig, optional
        The descriptor settings (default :class:`DescriptorConfig`): threshold, smoothing,
        minimum area and the reference pixel size the segmentation runs at.
    level_images : bool
        Level the image first (default), as :func:`~hybridtmd.descriptors.extract_descriptors`
        does; False for levelled input.
    level_config : LevelConfig, optional
        The levelling settings.

    Returns
    -------
    GrainLabels
        The labels on the family's grid, that grid's pixel size and origin in nm, the threshold.
    """
    surface = _levelled_surface(image, config, level_images, level_config)
    grid = surface.reference
    if grid.is_flat:
        labels, threshold = np.zeros(grid.height.shape, dtype=np.int64), float("nan")
    else:
        labels, threshold = surface_grains(grid)
    return GrainLabels(labels, tuple(float(p) for p in grid.pixel_size_nm), _origin(image, grid), float(threshold))


def blob_positions(image: AFMImage, config: DescriptorConfig | None = None, *,
                   family: Literal["morphology", "paper"] = "morphology", level_images: bool = True,
                   level_config: LevelConfig | None = None) -> pd.DataFrame:
    """The difference-of-Gaussian blobs a blob descriptor counts, with their positions and sizes.

    ``family="morphology"``: the blobs of ``morph_dog_blob_density_per_um2`` (the image at the
    reference pixel size, sigma 5-40 reference pixels); ``"paper"``: those of
    ``paper_dog_blob_count`` (the native image, sigma 5-40 of its pixels). Both on the normalised
    grey image with ``config.blob_method`` (:func:`~hybridtmd.descriptors.paper.dog_blobs`).

    Parameters
    ----------
    image : AFMImage
        A height map in nm.
    config : DescriptorConfig, optional
        The descriptor settings (default :class:`DescriptorConfig`).
    family : "morphology" or "paper"
        Whose blobs.
    level_images, level_config :
        As in :func:`grain_labels`.

    Returns
    -------
    pandas.DataFrame
        One row per blob, columns :data:`BLOB_COLUMNS`: ``x_nm``, ``y_nm`` the centre in the
        scan's frame (module docstring), ``sigma_nm`` the detecting Gaussian's sigma and
        ``radius_nm = sqrt(2) sigma_nm`` (skimage's blob radius), with the grid's geometric-mean
        pixel side. Empty for an image without height contrast.
    """
    if family not in ("morphology", "paper"):
        raise ValueError(f"family must be 'morphology' or 'paper', not {family!r}")
    surface = _levelled_surface(image, config, level_images, level_config)
    grid = surface.reference if family == "morphology" else surface
    blobs = surface_blobs(grid)
    (ox, oy), (dx, dy) = _origin(image, grid), grid.pixel_size_nm
    sigma = blobs[:, 2] * grid.pixel_length_nm
    return pd.DataFrame({"x_nm": ox + blobs[:, 1] * dx, "y_nm": oy + blobs[:, 0] * dy, "sigma_nm": sigma,
                         "radius_nm": np.sqrt(2) * sigma}, columns=BLOB_COLUMNS)

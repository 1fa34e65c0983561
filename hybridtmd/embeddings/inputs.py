"""From an AFM height map to CNN input tensors: normalise, tile, resize, replicate, standardise,
and the eight dihedral views used for test-time augmentation and training augmentation."""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .._utils.params import Interval
from ..io import AFMImage
from ..preprocess import PERCENTILE_PAIR, normalise_height, tile
from .backbones import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    import torch

#: Parameter constraint (:func:`hybridtmd._utils.params.validate_params`) of a square CNN input side or
#: tile size in pixels.
INPUT_SIZE = Interval(numbers.Integral, 16, None)
#: Parameter constraint of ``clip_percentiles``: the height percentiles mapped to 0 and 1.
CLIP_PERCENTILES = PERCENTILE_PAIR


def to_input_tensor(
    unit_height: np.ndarray,
    input_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """A [0, 1] grey map -> (3, input_size, input_size) float32 tensor: bilinear resize
    (antialiased when shrinking), grey repeated to 3 channels, per-channel (x - mean) / std."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    # float64 arithmetic, rounded once at the end: the separable resize then commutes with
    # rotations/transposes bit for bit (in float32 the row and column passes round differently,
    # which the network amplifies into differences between an image and its rotation)
    x = torch.from_numpy(np.asarray(unit_height, dtype=np.float64))[None, None]
    if tuple(x.shape[-2:]) != (input_size, input_size):
        shrink = x.shape[-2] > input_size or x.shape[-1] > input_size
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False, antialias=shrink)
    m = torch.tensor(mean, dtype=torch.float64)[:, None, None]
    s = torch.tensor(std, dtype=torch.float64)[:, None, None]
    return ((x[0].expand(3, -1, -1) - m) / s).float()


def d4_view(x: torch.Tensor, view: int) -> torch.Tensor:
    """Dihedral transform number ``view`` (0-7) of a (..., H, W) square tensor: mirrored
    (last axis flipped) when ``view >= 4``, then rotated by ``view % 4`` quarter turns."""
    import torch

    if view >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, view % 4, dims=(-2, -1)) if view % 4 else x


def d4_views(x: torch.Tensor) -> torch.Tensor:
    """The 8 dihedral transforms (4 rotations x optional mirror) of a (C, H, W) square tensor,
    stacked as (8, C, H, W) in the order of :func:`d4_view`; the identity first."""
    import torch

    return torch.stack([d4_view(x, view) for view in range(8)])


def tile_count(shape: tuple[int, int], tile_size_px: int | None, tile_stride_px: int | None = None) -> int:
    """How many arrays :func:`height_tiles` returns for an image of ``shape``."""
    if tile_size_px is None or min(shape) < tile_size_px:
        return 1
    stride = tile_stride_px or tile_size_px
    return ((shape[0] - tile_size_px) // stride + 1) * ((shape[1] - tile_size_px) // stride + 1)


def height_tiles(image: AFMImage, tile_size_px: int | None, tile_stride_px: int | None = None) -> list[np.ndarray]:
    """The height arrays to embed: the whole image (no tile size, or an image smaller than a
    tile), or its complete square tiles (:func:`hybridtmd.preprocess.tile`)."""
    if tile_size_px is None or min(image.shape) < tile_size_px:
        return [image.height]
    return [t.height for t in tile(image, tile_size_px, tile_stride_px)]


def image_views(
    image: AFMImage,
    clip_percentiles: tuple[float, float],
    input_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    *,
    tile_size_px: int | None = None,
    tile_stride_px: int | None = None,
    tta: str = "none",
) -> Iterator[torch.Tensor]:
    """Every CNN input of one image, tile by tile (each tile's 8 dihedral views with
    ``tta="d4"``): ``(3, input_size, input_size)`` tensors whose mean embedding is the image's.

    Heights are mapped to [0, 1] between the image's ``clip_percentiles`` (computed on the whole
    image, so all its tiles share one height scale; a map without contrast becomes 0.5), then
    :func:`to_input_tensor`.
    """
    limits = tuple(np.percentile(image.height, clip_percentiles))  # whole image: tiles share a scale
    for part in height_tiles(image, tile_size_px, tile_stride_px):
        x = to_input_tensor(normalise_height(part, bounds=limits, flat_value=0.5), input_size, mean, std)
        if tta == "d4":
            yield from d4_views(x)
        else:
            yield x

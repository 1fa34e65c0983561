"""Where a latent dimension fires: the backbone's feature map of one channel, before pooling.

An embedding is the global average of the backbone's last feature map (``D`` channels of
``h x w`` cells; 7 x 7 for a 224-px input to EfficientNet-Lite0 or a ResNet). The map of latent
dimension ``d`` is channel ``d`` of that map: it shows which parts of the height map make the
dimension large, in the spirit of class-activation maps (Zhou et al., "Learning deep features for
discriminative localization", CVPR 2016), but per embedding dimension rather than per class.

:func:`latent_maps` returns those maps in the image's own pixels:

- **Upsampling conserves the mean.** Each cell covers an equal rectangle of the image (the image
  is resized to the square CNN input as a whole); every image pixel takes the area-weighted mean
  of the cells it overlaps (conservative, "box" remapping). So a map's mean over the image is
  exactly the mean of its cells, which is the embedding value: the **pooling identity**
  ``maps.maps[j].mean() == embedding[dims[j]]`` holds to float rounding. The remapped map is
  piecewise constant at the network's resolution; figures smooth it for display only.
- **d4 TTA**: each of the 8 views' maps is transformed back into the image's orientation
  (the inverse of :func:`~hybridtmd.embeddings.d4_view`) before the views are averaged, exactly
  as their pooled vectors are averaged into the embedding.
- **Tiling**: each tile's map is remapped to its tile and the tiles are stitched at their origins
  (overlapping tiles averaged pixel by pixel); pixels no complete tile covers are NaN. With
  non-overlapping tiles (the default stride) the identity holds over the covered pixels.
- **PCA outputs** (``pca_components``): a component is a linear combination of channels, so its
  map is the same combination of channel maps (minus the PCA mean); the identity still holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..io import AFMImage
from ..preprocess import level, tile
from .backbones import pooled
from .embedder import CNNEmbedder

if TYPE_CHECKING:  # torch is imported lazily
    import torch
    from torch import nn

_INDEX = re.compile(r"(\d+)$")


def feature_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last feature map ``(N, D, h, w)`` of a backbone network, before its global average pool.

    ``model`` is a network of :func:`shared_model` (or any module :func:`pooled` accepts): timm
    models give ``forward_features``, torchvision ResNets their ``layer4`` output, and a module
    that returns a feature map itself gives that map. The embedding is the map's mean over
    ``(h, w)`` (the pooling identity, which :func:`hybridtmd.embeddings.latent_maps` relies on).

    Raises
    ------
    TypeError
        The module returns vectors and has no known way to reach its map.
    """
    import torch

    wrapper = type(pooled(torch.nn.Identity()))  # the class shared_model wraps networks in
    inner = model.inner if isinstance(model, wrapper) else model
    if hasattr(inner, "forward_features"):  # timm: forward_head pools this map
        out = inner.forward_features(x)
    elif _is_torchvision_resnet(inner):
        out = inner.maxpool(inner.relu(inner.bn1(inner.conv1(x))))
        out = inner.layer4(inner.layer3(inner.layer2(inner.layer1(out))))
    else:
        out = inner(x)
    if out.ndim != 4:
        raise TypeError(f"{type(inner).__name__} returns {tuple(out.shape)}, not a feature map (N, D, h, w): "
                        "register a module that returns its last feature map to get latent maps")
    return out


def _is_torchvision_resnet(module: nn.Module) -> bool:
    try:
        from torchvision.models import ResNet
    except ImportError:
        return False
    return isinstance(module, ResNet)


@dataclass(frozen=True)
class LatentMaps:
    """Maps of latent dimensions over one image.

    Attributes
    ----------
    names : list of str
        The dimensions, as feature-table columns (``latent__0396``, ``latent__pca_03``).
    maps : ndarray (n_dims, H, W)
        Each dimension's activation in the image's pixels (same units as the embedding value);
        NaN where no tile covers the image.
    pooled : ndarray (n_dims,)
        The embedding values: the mean over tiles and views of each native map, which is what
        :class:`~hybridtmd.embeddings.CNNEmbedder` outputs.
    native_shape : (h, w)
        The backbone's map size per view.
    image : AFMImage
        The image the maps belong to (levelled when the model levels), for overlays.
    """

    names: list[str]
    maps: np.ndarray
    pooled: np.ndarray
    native_shape: tuple[int, int]
    image: AFMImage


def _embedder_and_image(model_or_embedder: Any, image: AFMImage) -> tuple[CNNEmbedder, AFMImage]:
    """The fitted embedder and the image as it sees it: a CNNEmbedder takes the image as given;
    a fitted HybridFeatures (``embedder_``) or a HybridClassifier (``features_``) levels it first
    when its features level."""
    if isinstance(model_or_embedder, CNNEmbedder):
        return model_or_embedder, image
    features = getattr(model_or_embedder, "features_", model_or_embedder)
    embedder = getattr(features, "embedder_", None)
    if not isinstance(embedder, CNNEmbedder):
        raise TypeError(f"{type(model_or_embedder).__name__} has no fitted CNN embedder: pass a CNNEmbedder, a "
                        "fitted HybridFeatures or a HybridClassifier fitted on images with an embedder")
    if getattr(features, "level_images", False):
        image = level(image, getattr(features, "level_config", None))
    return embedder, image


def _channel_index(dim: int | str, n_out: int) -> int:
    """Output index of ``dim``: an int, or a column name ending in its number (``latent__0396``,
    ``latent_0396``, ``pca_03``)."""
    if isinstance(dim, (int, np.integer)) and not isinstance(dim, bool):
        index = int(dim)
    else:
        match = _INDEX.search(str(dim))
        if match is None:
            raise ValueError(f"{dim!r} is not a latent dimension (expected an index or a name like latent__0396)")
        index = int(match.group(1))
    if not 0 <= index < n_out:
        raise IndexError(f"latent dimension {dim!r} out of range: the embedder has {n_out} outputs")
    return index


def conservative_resize(maps: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Remap ``(..., h, w)`` cell values onto a ``shape`` pixel grid covering the same extent:
    each pixel is the area-weighted mean of the cells it overlaps, so the mean over the grid is
    the mean over the cells (exactly, for any sizes)."""
    def overlap(n_out: int, n_in: int) -> np.ndarray:
        edges_out = np.arange(n_out + 1, dtype=np.float64)
        edges_in = np.arange(n_in + 1, dtype=np.float64) * (n_out / n_in)
        lo = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
        hi = np.minimum(edges_out[1:, None], edges_in[None, 1:])
        return np.clip(hi - lo, 0.0, None)  # (n_out, n_in); each row sums to 1

    rows, cols = overlap(shape[0], maps.shape[-2]), overlap(shape[1], maps.shape[-1])
    return np.einsum("ia,...ab,jb->...ij", rows, maps, cols)


def _undo_d4(maps: np.ndarray, view: int) -> np.ndarray:
    """Inverse of :func:`~hybridtmd.embeddings.d4_view` on ``(..., h, w)`` maps: rotate back,
    then unmirror."""
    out = np.rot90(maps, -(view % 4), axes=(-2, -1))
    return np.flip(out, axis=-1) if view >= 4 else out


def _tile_boxes(embedder: CNNEmbedder, image: AFMImage) -> list[tuple[int, int, int, int]]:
    """(row, col, height, width) of every region the embedder embeds, in its view order."""
    size, stride = embedder.tile_size_px, embedder.tile_stride_px
    if size is None or min(image.shape) < size:
        return [(0, 0, *image.shape)]
    return [(*part.metadata["tile_origin_px"], size, size) for part in tile(image, size, stride)]


def _native_maps(embedder: CNNEmbedder, image: AFMImage) -> np.ndarray:
    """Every view's full feature map, ``(V, D, h, w)`` float64, in the embedder's view order."""
    import torch

    model = embedder.get_model()
    inputs = embedder.input_tensors(image)
    device = next(iter(model.parameters()), torch.empty(0)).device
    with torch.inference_mode():
        parts = [feature_map(model, inputs[i:i + embedder.batch_size].to(device)).float().cpu().numpy()
                 for i in range(0, len(inputs), embedder.batch_size)]
    return np.concatenate(parts).astype(np.float64)


def _project(embedder: CNNEmbedder, native: np.ndarray) -> np.ndarray:
    """Channel maps → output maps: PCA scores are ``(x - mean) @ components.T``, linear in the
    maps, so each component's map is that combination of channel maps."""
    if embedder.pca_components is None:
        return native
    pca = embedder.pca_
    maps = np.einsum("kc,vchw->vkhw", pca.components_, native)
    return maps - (pca.components_ @ pca.mean_)[None, :, None, None]


def latent_maps(model_or_embedder: Any, image: AFMImage, dims: Iterable[int | str]) -> LatentMaps:
    """Maps of latent dimensions ``dims`` over ``image``, in the image's pixels.

    Parameters
    ----------
    model_or_embedder : CNNEmbedder, HybridFeatures or HybridClassifier
        Fitted (a bare CNNEmbedder needs fitting only with ``pca_components``). With a model or
        features that level, ``image`` is levelled as they level it.
    image : AFMImage
    dims : iterable of int or str
        Output indices or column names (``latent__0396``; ``latent__pca_03`` with PCA).

    Returns
    -------
    LatentMaps
        ``maps[j]`` averages to ``pooled[j]``, the embedding value of ``dims[j]`` (module docstring).
    """
    embedder, image = _embedder_and_image(model_or_embedder, image)
    pca = embedder.pca_components is not None
    n_out = len(embedder.get_feature_names_out())
    dims = list(dims)
    index = [_channel_index(d, n_out) for d in dims]
    views_per_tile = 8 if embedder.tta == "d4" else 1
    native = _project(embedder, _native_maps(embedder, image))[:, index]  # (V, k, h, w)
    boxes = _tile_boxes(embedder, image)
    total = np.zeros((len(index), *image.shape))
    count = np.zeros(image.shape)
    pooled = np.zeros(len(index))
    for t, (r, c, h, w) in enumerate(boxes):
        views = native[t * views_per_tile:(t + 1) * views_per_tile]
        tile_map = np.mean([_undo_d4(m, v) if views_per_tile == 8 else m for v, m in enumerate(views)], axis=0)
        pooled += tile_map.mean(axis=(-2, -1)) / len(boxes)
        total[:, r:r + h, c:c + w] += conservative_resize(tile_map, (h, w))
        count[r:r + h, c:c + w] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        maps = np.where(count > 0, total / count, np.nan)
    prefix = "latent__pca_" if pca else "latent__"
    width = 2 if pca else max(4, len(str(n_out - 1)))
    names = [f"{prefix}{i:0{width}d}" for i in index]
    return LatentMaps(names, maps, pooled, tuple(native.shape[-2:]), image)


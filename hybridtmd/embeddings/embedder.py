"""The :class:`CNNEmbedder` transformer: frozen pretrained CNN features of AFM height maps."""

from __future__ import annotations

import json
import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._utils.devices import DEVICES, select_device
from .._utils.params import Interval, Options, check_params
from .._utils.progress import ProgressBar
from ..errors import HybridTMDError
from ..io import AFMImage
from ..io.image import check_images
from ..preprocess import NORMALISE_PERCENTILES
from .backbones import Backbone, create_backbone, shared_model
from .cache import CACHE_FORMAT_VERSION, EmbeddingCache, cache_key
from .inputs import CLIP_PERCENTILES, INPUT_SIZE, image_views, tile_count

if TYPE_CHECKING:  # torch is imported lazily: `import hybridtmd.embeddings` stays cheap
    import torch
    from torch import nn

#: Runs with more forward passes than this show a progress bar (``progress=None``).
PROGRESS_MIN_VIEWS = 256


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

    def views(self, image: AFMImage) -> Iterator[torch.Tensor]:
        """Every CNN input of ``image`` (tiles x TTA views)."""
        return image_views(image, self.clip_percentiles, self.input_size, self.backbone.mean, self.backbone.std,
                           tile_size_px=self.tile_size_px, tile_stride_px=self.tile_stride_px, tta=self.tta)

    def n_views(self, image: AFMImage) -> int:
        """How many inputs :meth:`views` yields for ``image``."""
        return tile_count(image.shape, self.tile_size_px, self.tile_stride_px) * (8 if self.tta == "d4" else 1)


class CNNEmbedder(TransformerMixin, BaseEstimator):
    """Frozen pretrained CNN features of AFM height maps (scikit-learn transformer).

    Input: a sequence of :class:`~hybridtmd.io.AFMImage` (levelled, e.g. by
    :class:`~hybridtmd.preprocess.Preprocessor`). Output: a DataFrame, one row per image, columns
    ``latent_0000...`` or, with ``pca_components``, ``pca_00...``. See :mod:`hybridtmd.embeddings`
    for the preprocessing.

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
        Per-image height percentiles mapped to 0 and 1; default
        :data:`~hybridtmd.preprocess.NORMALISE_PERCENTILES` (0.5, 99.5), the descriptors' grey
        image's too, so both branches see the same contrast.
    tile_size_px, tile_stride_px : int, optional
        Embed square tiles of this many source pixels (stride default: tile size) and average
        them; images smaller than a tile are embedded whole.
    batch_size : int
        Inputs per forward pass. Every pass has exactly this many rows (the last batch of a call
        is padded with zeros, which are discarded): the CPU/GPU kernels then see one shape only,
        so an image's vector never depends on what else is in the batch (bit-identical on one
        machine; a pass with fewer rows may take another kernel and differ by ~1e-6, which a
        tree head can turn into a different prediction). The cost is at most ``batch_size - 1``
        padded passes per call: lower it to predict single images faster.
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

    _parameter_constraints: dict[str, list[Any]] = {
        "backbone": [str],
        "weights": [str, Path, None],
        "tta": [Options(("none", "d4"))],
        "batch_size": [Interval(numbers.Integral, 1, None)],
        "clip_percentiles": [CLIP_PERCENTILES],
        "input_size": [INPUT_SIZE, None],
        "tile_size_px": [INPUT_SIZE, None],
        "tile_stride_px": [INPUT_SIZE, None],
        "device": [Options(DEVICES)],
        "cache_dir": [str, Path, None],
        "pca_components": [Interval(numbers.Integral, 1, None), Interval(numbers.Real, 0, 1, closed="neither"), None],
        "progress": [bool, None],
    }

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        *,
        weights: str | Path | None = None,
        tta: Literal["none", "d4"] = "none",
        input_size: int | None = None,
        clip_percentiles: tuple[float, float] = NORMALISE_PERCENTILES,
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
        return shared_model(plan.backbone, plan.device)

    def get_backbone(self) -> Backbone:
        """The resolved backbone (name, weights id, preprocessing), without building the network."""
        return self._plan().backbone

    def resolved_input_size(self) -> int:
        """The CNN input side actually used: ``input_size`` or the backbone's."""
        return self._plan().input_size

    def n_views(self, image: AFMImage) -> int:
        """Forward passes one image costs: its tiles, times 8 with ``tta="d4"``."""
        return self._plan().n_views(image)

    def input_tensors(self, image: AFMImage) -> torch.Tensor:
        """Every CNN input (tiles x TTA views) of one image, ``(V, 3, S, S)``; its embedding is the
        mean of the model's outputs over them."""
        import torch

        return torch.stack(list(self._plan().views(image)))

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

    @classmethod
    def check_options(cls, values: Mapping[str, Any]) -> None:
        """ValueError for a value among ``values`` (some or all keyword arguments) that ``fit``
        would refuse, with its message; nothing is built (a config's ``[embeddings]`` table)."""
        check_params(values, cls._parameter_constraints, cls.__name__)
        if values.get("tile_stride_px") is not None and values.get("tile_size_px") is None:
            raise ValueError("tile_stride_px needs tile_size_px")

    def _plan(self) -> _Plan:
        self.check_options(self.get_params(deep=False))
        device = select_device(self.device)
        backbone = create_backbone(self.backbone, self.weights)
        lo, hi = (float(v) for v in self.clip_percentiles)
        return _Plan(backbone, int(self.input_size or backbone.input_size), (lo, hi),
                     None if self.tile_size_px is None else int(self.tile_size_px),
                     None if self.tile_stride_px is None else int(self.tile_stride_px), self.tta, device)

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
                key = cache_key(config, image.height)
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

        model = shared_model(plan.backbone, plan.device)
        sums = np.zeros((len(images), plan.backbone.embedding_dim), dtype=np.float64)
        counts = np.zeros(len(images), dtype=np.int64)
        total = sum(plan.n_views(image) for image in images)
        show = self.progress if self.progress is not None else total > PROGRESS_MIN_VIEWS

        def batches() -> Iterator[tuple[torch.Tensor, np.ndarray]]:
            buffer, owners = [], []
            for i, image in enumerate(images):
                for view in plan.views(image):
                    buffer.append(view)
                    owners.append(i)
                    if len(buffer) == self.batch_size:
                        yield torch.stack(buffer), np.asarray(owners)
                        buffer, owners = [], []
            if buffer:  # padded to the fixed shape: see batch_size in the class docstring
                n_pad = self.batch_size - len(buffer)
                yield torch.cat([torch.stack(buffer), buffer[0].new_zeros((n_pad, *buffer[0].shape))]), \
                    np.asarray(owners)

        with ProgressBar(show, total, f"embedding ({plan.backbone.name})", transient=True) as bar, \
                torch.inference_mode():
            for batch, owners in batches():
                if plan.device.startswith("cuda"):  # page-locked: the copy below runs asynchronously
                    batch = batch.pin_memory()
                feats = model(batch.to(plan.device, non_blocking=True)).float().cpu().numpy()[: len(owners)]
                if feats.shape != (len(owners), plan.backbone.embedding_dim):
                    raise HybridTMDError(f"backbone {plan.backbone.name!r} returned shape {feats.shape}, expected "
                                         f"({len(owners)}, {plan.backbone.embedding_dim})")
                np.add.at(sums, owners, feats.astype(np.float64))  # float64 sums: order-robust means
                np.add.at(counts, owners, 1)
                bar.advance(len(owners))
        return (sums / counts[:, None]).astype(np.float32)



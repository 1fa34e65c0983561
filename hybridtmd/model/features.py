"""AFM images → one feature table: physical descriptors ⊕ frozen-CNN embeddings.

:class:`HybridFeatures` levels every image once, then concatenates the physical descriptors
(:class:`~hybridtmd.descriptors.DescriptorExtractor`) and the frozen-CNN embeddings
(:class:`~hybridtmd.embeddings.CNNEmbedder`) under the column names of :mod:`.columns`.
``feature_groups_`` maps each group (descriptor family: ``paper``, ``areal``, ``spectral``,
``grains``, ``texture``; ``<channel>__<family>`` for another AFM channel; and ``latent``) to its
columns; explanations sum attributions over it. Either half can be switched off
(``descriptors=None`` / ``embedder=None``) for ablations.

Multichannel AFM (``channels``): each image is a mapping channel name -> AFMImage
(:func:`hybridtmd.io.load_channels`); the height channel is levelled and embedded, and the
descriptors describe every channel of ``channels`` (:class:`~hybridtmd.descriptors.DescriptorExtractor`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from .._utils.devices import select_device
from .._utils.params import Check, validate_params
from .._utils.user_warnings import warn_at_user
from ..descriptors import DescriptorConfig, DescriptorExtractor
from ..descriptors.extract import effective_config, is_channel_selection
from ..descriptors.release import saved_level_flag
from ..embeddings import CNNEmbedder
from ..errors import ModelFileError
from ..io import AFMImage
from ..io.image import HEIGHT_CHANNEL, check_channel_maps, check_images, height_images
from ..preprocess import LevelConfig, level
from .columns import PHYS_PREFIX, feature_groups_from_columns, feature_units, latent_column_name

#: CNNEmbedder parameters a saved model stores (``pca_components`` would need pickle; ``progress``
#: is not a setting of the features; ``cache_dir`` is stored as None: where to cache is a run's choice)
EMBEDDER_KEYS = ("backbone", "weights", "tta", "input_size", "clip_percentiles", "tile_size_px",
                 "tile_stride_px", "batch_size", "device", "cache_dir")
REASON_COLUMNS = ["image", "source", "feature", "reason"]


def _extractor(families: Any = "default", config: DescriptorConfig | None = None, level_images: bool = True,
               level_config: LevelConfig | None = None, channels: Any = None) -> DescriptorExtractor:
    return DescriptorExtractor(families=families, config=config, level_images=level_images,
                               level_config=level_config, channels=channels)


def unlevelled_extractor(families: Any = "default", config: DescriptorConfig | None = None) -> DescriptorExtractor:
    """A :class:`~hybridtmd.descriptors.DescriptorExtractor` that does not level: the physical
    half of :class:`HybridFeatures`, which levels each image once before both halves."""
    return _extractor(families, config, level_images=False)


def _levels_images(extractor: DescriptorExtractor) -> bool:
    """Whether the extractor levels its images itself."""
    return bool(extractor.level_images)


class HybridFeatures(TransformerMixin, BaseEstimator):
    """AFM images → physical descriptors ⊕ frozen-CNN embeddings, one DataFrame.

    Parameters
    ----------
    descriptors : DescriptorExtractor, "default" or None
        The physical half; ``"default"`` is a ``DescriptorExtractor`` of every default family that
        does not level (images arrive levelled). ``None`` switches it off. A custom extractor is
        used as given: switch its own levelling off when ``level_images=True`` here, or images are
        levelled twice.
    embedder : CNNEmbedder, "default" or None
        The latent half; ``"default"`` is ``CNNEmbedder()`` (offline EfficientNet-Lite0, 1280-d).
        ``None`` switches it off.
    level_images : bool
        Level each image once (:func:`hybridtmd.preprocess.level`) before both halves.
    level_config : LevelConfig, optional
        Levelling settings (default :class:`~hybridtmd.preprocess.LevelConfig`).
    channels : dict, optional
        Multichannel AFM: channel name -> selection of families, passed to the descriptor
        extractor (its ``channels``; :func:`hybridtmd.descriptors.channel_selections` builds one
        from channel names), e.g. ``{"height": "default", "phase": ["areal", "spectral",
        "texture"]}``. Each image is then a mapping channel -> AFMImage (a bare AFMImage is the
        height channel alone: its other channels' columns are NaN with the reason). Only the
        height channel is levelled and embedded. None (default): height maps only. Needs the
        descriptors half; a custom extractor with other ``channels`` is an error.

    Attributes
    ----------
    descriptors_, embedder_ : the fitted halves (None when off)
    feature_names_out_ : ndarray of str
    feature_groups_ : dict  group → columns (descriptor families, ``<channel>__<family>``, then
        ``latent``)
    feature_units_ : dict  column → unit (another channel's in its unit seen at ``fit``)
    """

    _parameter_constraints = {
        "descriptors": [None, DescriptorExtractor, Check(lambda v: v == "default", "'default'"),
                        Check(lambda v: hasattr(v, "transform_with_reasons"), "a descriptor transformer")],
        "embedder": [None, Check(lambda v: v == "default" or hasattr(v, "fit_transform"),
                                 "an embedder or 'default'")],
        "level_images": [bool],
        "level_config": [None, LevelConfig],
        "channels": [None, Check(is_channel_selection, "a dict channel name -> selection of families")],
    }

    def __init__(
        self,
        descriptors: DescriptorExtractor | str | None = "default",
        embedder: CNNEmbedder | str | None = "default",
        level_images: bool = True,
        level_config: LevelConfig | None = None,
        channels: Mapping[str, str | Sequence[str] | None] | None = None,
    ):
        self.descriptors = descriptors
        self.embedder = embedder
        self.level_images = level_images
        self.level_config = level_config
        self.channels = channels

    def _halves(self) -> tuple[DescriptorExtractor | None, CNNEmbedder | None]:
        validate_params(self, self._parameter_constraints)
        desc = _resolve(self.descriptors, unlevelled_extractor, "descriptors")
        emb = _resolve(self.embedder, CNNEmbedder, "embedder")
        if desc is None and emb is None:
            raise ValueError("HybridFeatures needs descriptors, an embedder or both (both are None)")
        if self.channels is not None:
            if desc is None:
                raise ValueError("channels needs the descriptors half (descriptors=None describes no channel)")
            own = desc.get_params().get("channels")
            if own is not None and dict(own) != dict(self.channels):
                raise ValueError(f"the descriptor extractor's channels {dict(own)} differ from channels "
                                 f"{dict(self.channels)}: set one of them")
            desc.set_params(channels=dict(self.channels))
        return desc, emb

    def _levelled(self, X: Any) -> list[AFMImage] | list[AFMImage | dict[str, AFMImage]]:
        """The input with its height maps levelled: AFMImages, or with ``channels`` one item per
        image (AFMImage, or dict channel -> AFMImage whose height entry alone is levelled)."""
        if self.channels is None:
            if isinstance(X, Mapping) or (isinstance(X, Sequence) and any(isinstance(x, Mapping) for x in X)):
                raise TypeError("these features describe height maps only (channels=None): pass AFMImages, or "
                                "set channels to describe mappings channel -> AFMImage")
            images = check_images(X)
            return [level(im, self.level_config) for im in images] if self.level_images else images
        items = check_channel_maps(X)
        if not self.level_images:
            return items
        return [level(item, self.level_config) if isinstance(item, AFMImage) else
                {key: level(image, self.level_config) if str(key).casefold() == HEIGHT_CHANNEL else image
                 for key, image in item.items()} for item in items]

    def fit(self, X: Sequence[AFMImage], y: Any = None) -> HybridFeatures:
        """Fit both halves (stateless unless the embedder has ``pca_components``)."""
        self.descriptors_, self.embedder_ = self._halves()
        images = self._levelled(X)
        if self.is_per_image():  # the halves learn nothing from the images: no table needed
            self._fit_without_data()
        else:
            self._table(images, fitting=True)
        return self

    def fit_transform(self, X: Sequence[AFMImage], y: Any = None, **fit_params: Any) -> pd.DataFrame:
        self.descriptors_, self.embedder_ = self._halves()
        return self._table(self._levelled(X), fitting=True)[0]

    def transform(self, X: Sequence[AFMImage]) -> pd.DataFrame:
        """The feature table of ``X``: one row per image, columns ``feature_names_out_``."""
        return self.transform_with_reasons(X)[0]

    def transform_with_reasons(self, X: Sequence[AFMImage]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The feature table of ``X`` and why each NaN descriptor is undefined: one row per NaN
        value, columns ``image`` (row position), ``source``, ``feature`` (the table's
        ``phys__`` name) and ``reason``."""
        check_is_fitted(self, "feature_names_out_")
        return self._table(self._levelled(X), fitting=False)

    def is_per_image(self) -> bool:
        """True when an image's features depend on that image alone (no embedder PCA): a table
        computed once for all images then equals fitting on each training fold."""
        return not (isinstance(self.embedder, CNNEmbedder) and self.embedder.pca_components is not None)

    def _names(self) -> list[str]:
        names: list[str] = []
        if self.descriptors_ is not None:
            names += [PHYS_PREFIX + n for n in self.descriptors_.get_feature_names_out()]
        if self.embedder_ is not None:
            names += [latent_column_name(n) for n in self.embedder_.get_feature_names_out()]
        return names

    def _set_names(self, names: list[str]) -> None:
        self.feature_names_out_ = np.asarray(names, dtype=object)
        self.feature_groups_ = feature_groups_from_columns(names)
        self.feature_units_ = feature_units(names)
        if self.descriptors_ is not None and hasattr(self.descriptors_, "feature_units_"):
            # the extractor knows each channel's unit (z_unit of the images seen at fit)
            self.feature_units_ |= {PHYS_PREFIX + c: u for c, u in self.descriptors_.feature_units_.items()}
        self.n_features_out_ = len(names)

    def _table(self, images: list[AFMImage], fitting: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The table and NaN reasons of levelled ``images``; ``fitting`` fits both halves first."""
        parts = []
        reasons = pd.DataFrame(columns=REASON_COLUMNS)
        if self.descriptors_ is not None:
            if fitting:
                self.descriptors_.fit(images)
            phys, phys_reasons = self.descriptors_.transform_with_reasons(images)
            parts.append(phys.add_prefix(PHYS_PREFIX))
            reasons = phys_reasons.assign(feature=lambda r: PHYS_PREFIX + r["feature"])
        if self.embedder_ is not None:
            heights = images if self.channels is None else height_images(images)
            latent = self.embedder_.fit_transform(heights) if fitting else self.embedder_.transform(heights)
            parts.append(latent.rename(columns=latent_column_name))
        table = pd.concat(parts, axis=1)
        table.index = pd.RangeIndex(len(images))
        if fitting:
            self._set_names(list(table.columns))
        return table, reasons

    def restore_fitted(self, feature_names: Sequence[str], channel_units: Mapping[str, str] | None = None
                       ) -> HybridFeatures:
        """Set up the fitted state of a loaded model without data (both halves are stateless
        without embedder PCA), with each channel's unit as saved (``channel_units``: a phase
        column in deg, not a.u.); :class:`ModelFileError` when these settings do not produce
        ``feature_names`` (another hybridtmd version or descriptor registry) or are invalid (a
        hand-edited manifest: unknown families, a height-only family asked of another channel)."""
        try:
            self.descriptors_, self.embedder_ = self._halves()
            self._fit_without_data()
            if channel_units is not None and self.descriptors_ is not None:
                self.descriptors_.set_channel_units(channel_units)
                self._set_names(self._names())
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"manifest: invalid feature settings ({type(exc).__name__}: {exc})") from None
        if list(self.feature_names_out_) != list(feature_names):
            raise ModelFileError("the manifest's feature names differ from those its feature settings produce "
                                 "(another hybridtmd version or descriptor registry?)")
        return self

    def _fit_without_data(self) -> None:
        """Fit per-image halves (no embedder PCA), which learn nothing from images."""
        if self.descriptors_ is not None:
            self.descriptors_.fit([])
        if self.embedder_ is not None:
            self.embedder_.fit([])
        self._set_names(self._names())

    def to_settings(self) -> dict[str, Any]:
        """The fitted features' settings as JSON-ready values (read back by :meth:`from_settings`)."""
        desc, emb = self.descriptors_, self.embedder_
        if emb is not None and emb.pca_components is not None:
            raise ModelFileError("saving a model whose embedder has pca_components is not supported "
                                 "(the PCA would need pickle); use pca_components=None")
        return {
            "level_images": bool(self.level_images),
            "level_config": _config_dict(self.level_config),
            # per channel its resolved descriptor names (release 0.1.0 and height-only models: None)
            "channels": None if self.channels is None else {
                channel: [spec.name for family in families for spec in family.descriptors]
                for channel, families in desc.channel_families_.items()},
            "descriptors": None if desc is None else {
                # the resolved columns and settings, not None ("the defaults at load time" would
                # change meaning whenever a default changes)
                "families": [str(name) for name in desc.get_feature_names_out()] if self.channels is None
                else [spec.name for family in desc.families_ for spec in family.descriptors],
                "config": effective_config(desc.families, desc.config).to_dict(),
                "level_images": _levels_images(desc),
                "level_config": _config_dict(desc.level_config),
            },
            # the unit of each channel's values, seen at fit (restore_fitted cannot see it)
            "channel_units": None if desc is None else dict(desc.channel_units_),
            # the cache folder is a setting of one run, not of the model: a model file must not say
            # where predict writes (a shared or edited model would write anywhere it names)
            "embedder": None if emb is None else {k: getattr(emb, k) for k in EMBEDDER_KEYS} | {"cache_dir": None},
        }

    @classmethod
    def from_settings(cls, values: dict[str, Any]) -> HybridFeatures:
        """The unfitted features :meth:`to_settings` described; models saved before the levelling
        flag was named ``level_images`` store it as ``level``. :class:`ModelFileError` when the
        settings are malformed."""
        try:
            d, e = values["descriptors"], values["embedder"]
            descriptors = None if d is None else _extractor(
                d["families"], _from_dict(DescriptorConfig, d["config"]), saved_level_flag(d),
                _from_dict(LevelConfig, d["level_config"]))
            embedder = None if e is None else CNNEmbedder(**{**e, "clip_percentiles": tuple(e["clip_percentiles"]),
                                                             "cache_dir": None,  # never the file's
                                                             "device": runnable_device(e.get("device", "auto"))})
            channels = values.get("channels")  # absent before multichannel models
            return cls(descriptors=descriptors, embedder=embedder, level_images=saved_level_flag(values),
                       level_config=_from_dict(LevelConfig, values["level_config"]),
                       channels=None if channels is None else dict(channels))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"manifest: invalid feature settings ({type(exc).__name__}: {exc})") from None

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_.copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags


def _resolve(value: Any, default: Callable[[], Any], what: str) -> Any:
    """An estimator parameter that is an estimator (cloned), "default" (``default()``) or None."""
    if value is None:
        return None
    if isinstance(value, str):
        if value != "default":
            raise ValueError(f"{what} must be an estimator, 'default' or None, not {value!r}")
        return default()
    return clone(value)


def resolve_features(features: HybridFeatures | str | None) -> HybridFeatures | None:
    """The unfitted :class:`HybridFeatures` a ``features`` parameter stands for: ``"default"`` →
    ``HybridFeatures()``, an instance → a clone, ``None`` → ``None``."""
    if isinstance(features, str) and features != "default":
        raise ValueError(f"features must be a HybridFeatures, 'default' or None, not {features!r}")
    return _resolve(features, HybridFeatures, "features")


def runnable_device(device: Any) -> Any:
    """A saved embedder's ``device`` on this machine: a model saved to run its CNN on CUDA runs it
    on the CPU where CUDA is absent, with a warning - as XGBoost does with a booster trained on a
    GPU. The arithmetic is the same; only float rounding differs (within the batch-size tolerance
    of the embeddings). Any other value is kept (an unknown one fails the embedder's checks)."""
    if device != "cuda":
        return device
    try:
        select_device("cuda")
    except ValueError:
        warn_at_user("the model was saved to embed on device 'cuda', but this machine has no CUDA: "
                     "embedding on the CPU instead (same arithmetic, float rounding may differ)")
        return "cpu"
    return device


def _config_dict(config: Any) -> dict[str, Any] | None:
    return None if config is None else config.to_dict()


def _from_dict(kind: Any, values: dict[str, Any] | None) -> Any:
    return None if values is None else kind.from_dict(values)

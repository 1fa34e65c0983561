"""Descriptor extraction: one image (:func:`extract_descriptors`) or many, as a scikit-learn
transformer (:class:`DescriptorExtractor`).

Levelling. Descriptors are defined on *levelled* heights. Both entry points level each image
with :func:`hybridtmd.preprocess.level` by default (``level_images=True``, settings
``level_config``, default :class:`~hybridtmd.preprocess.LevelConfig`); pass
``level_images=False`` for images that are already levelled (e.g. the output of
:class:`~hybridtmd.preprocess.Preprocessor`).

Undefined values. A descriptor that does not exist for an image (flat image, no grains, a
family that failed) is NaN and its reason is kept: in ``Series.attrs["reasons"]`` for one image,
in the second table of :meth:`DescriptorExtractor.transform_with_reasons` (one row per NaN
value) for a batch. Nothing about one image stops a batch.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._utils.params import Check, Options, validate_params
from .._utils.progress import track
from .._utils.user_warnings import warn_at_user
from ..io import AFMImage
from ..io.image import HEIGHT_CHANNEL, channel_image, check_channel_maps, check_images
from ..preprocess import LevelConfig, level
from .core import DescriptorConfig, Surface
from .registry import (
    DEFAULT,
    RELEASE_0_1_0,
    DescriptorSpec,
    Family,
    RegistryError,
    family_names,
    get_family,
    resolve_families,
)


def _family_values(image: AFMImage, families: list[Family], config: DescriptorConfig, level_images: bool,
                   level_config: LevelConfig | None) -> tuple[list[float], dict[str, str]]:
    """Values (in the families' column order) and NaN reasons of one image; never raises."""
    names = _columns(families)
    reasons: dict[str, str] = {}
    try:
        levelled = level(image, level_config) if level_images else image
    except Exception as exc:  # a broken image must not stop the batch: every column NaN
        why = f"levelling failed: {type(exc).__name__}: {exc}"
        return [math.nan] * len(names), dict.fromkeys(names, why)
    surface = Surface(levelled, config, requested=names)
    values: list[float] = []
    for fam in families:
        try:
            with warnings.catch_warnings():
                # numpy/skimage warnings on degenerate inputs become NaN + reason below
                warnings.simplefilter("ignore", RuntimeWarning)
                result = fam.compute(surface)
            fam_reasons = getattr(result, "reasons", {})
        except Exception as exc:
            result, why = {}, f"family {fam.name!r} failed: {type(exc).__name__}: {exc}"
            fam_reasons = dict.fromkeys(fam.names, why)
        for name in fam.names:
            value = result.get(name, math.nan)
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = math.nan
                fam_reasons.setdefault(name, "value is not a number")
            if not np.isfinite(value):
                value = math.nan
                reasons[name] = fam_reasons.get(name) or (
                    f"not returned by family {fam.name!r}" if name not in result else "not finite (degenerate input)")
            values.append(value)
    return values, reasons


def _compute_one(item: AFMImage | Mapping[str, AFMImage], plan: list[tuple[str | None, list[Family]]],
                 config: DescriptorConfig, level_images: bool,
                 level_config: LevelConfig | None) -> tuple[list[float], dict[str, str]]:
    """Values and NaN reasons of one input over every channel of ``plan`` (channel None: the
    input is one AFMImage); columns named by :func:`channel_column`. Only the height channel is
    levelled: the levelling removes a tilt of the *surface*, which other channels do not carry."""
    values: list[float] = []
    reasons: dict[str, str] = {}
    for channel, families in plan:
        image = item if channel is None else channel_image(item, channel)
        columns = [channel_column(channel, spec) for fam in families for spec in fam.descriptors]
        if image is None:
            values += [math.nan] * len(columns)
            reasons.update(dict.fromkeys(columns, f"input has no {channel!r} channel"))
            continue
        levels = level_images and channel in (None, HEIGHT_CHANNEL)
        channel_values, channel_reasons = _family_values(image, families, config, levels, level_config)
        renamed = dict(zip(_columns(families), columns, strict=True))
        values += channel_values
        reasons.update({renamed[name]: why for name, why in channel_reasons.items()})
    return values, reasons


def channel_column(channel: str | None, spec: DescriptorSpec) -> str:
    """Column name of descriptor ``spec`` of ``channel``: the descriptor's name for the height
    channel; ``<channel>__<name>`` for another, without the ``_nm`` suffix of a descriptor in the
    channel's own unit (``phase__sq``)."""
    if channel in (None, HEIGHT_CHANNEL):
        return spec.name
    name = spec.name[:-3] if spec.z_unit == "{z}" and spec.name.endswith("_nm") else spec.name
    return f"{channel}__{name}"


def column_descriptor(column: str) -> tuple[str, DescriptorSpec | None]:
    """The channel and the registered descriptor of a descriptor column (the inverse of
    :func:`channel_column`): ``"phase__sq"`` -> ``("phase", <sq_nm>)``, ``"sq_nm"`` ->
    ``("height", <sq_nm>)``; the descriptor is None for a name the registry does not know."""
    channel, rest = column.split("__", 1) if "__" in column else (HEIGHT_CHANNEL, column)
    specs = [spec for name in family_names() for spec in get_family(name).descriptors]
    if channel == HEIGHT_CHANNEL:
        return channel, next((spec for spec in specs if spec.name == column), None)
    return channel, next((spec for spec in specs if channel_column(channel, spec) == column), None)


def channel_selections(channels: Sequence[str], height_families: str | Sequence[str] | None = DEFAULT
                       ) -> dict[str, str | list[str] | None]:
    """The ``channels`` parameter for a list of channel names (``["height", "phase"]``, the
    command line's ``--channels height,phase``): the height channel computes ``height_families``,
    every other channel the default families that describe any channel (``areal``, ``spectral``,
    ``texture``: those that need heights in nm cannot describe a phase map). Names are
    lower-cased; repeats dropped; ValueError for none or an invalid name."""
    names = list(dict.fromkeys(str(c).strip().casefold() for c in channels if str(c).strip()))
    if not names:
        raise ValueError("channels needs at least one channel name, e.g. height,phase")
    any_channel = [name for name in family_names(default_only=True) if get_family(name).any_channel]
    selection = {c: (height_families if c == HEIGHT_CHANNEL else list(any_channel)) for c in names}
    if not is_channel_selection(selection):
        raise ValueError(f"channel names must be identifiers without '__' (they prefix column names): {names}")
    return selection


def channel_unit(spec: DescriptorSpec, z_unit: str) -> str:
    """Unit of descriptor ``spec`` on a channel whose values are in ``z_unit``."""
    return spec.z_unit.replace("{z}", z_unit) if spec.z_unit and z_unit != "nm" else spec.unit


def effective_config(families: Any, config: DescriptorConfig | None) -> DescriptorConfig:
    """The settings a selection computes with: ``config``, or without one the defaults - those
    of release 0.1.0 for its preset (``None`` / ``"release-0.1.0"``), so its models predict as
    they did."""
    if config is not None:
        return config
    return DescriptorConfig.release_0_1_0() if families is None or families == RELEASE_0_1_0 else DescriptorConfig()


def extract_descriptors(
    image: AFMImage,
    families: str | Sequence[str] | None = DEFAULT,
    config: DescriptorConfig | None = None,
    *,
    level_images: bool = True,
    level_config: LevelConfig | None = None,
) -> pd.Series:
    """Physical descriptors of one AFM image.

    Parameters
    ----------
    image : AFMImage
    families : str or list of str, optional
        A selection (:func:`~hybridtmd.descriptors.registry.resolve_families`): family names,
        descriptor names, ``"<family>:all"``; default ``"default"`` (every default family,
        default columns); ``None`` or ``"release-0.1.0"``: the columns of release 0.1.0.
    config : DescriptorConfig, optional
        Descriptor settings (default :class:`DescriptorConfig`, or
        :meth:`DescriptorConfig.release_0_1_0` for the release-0.1.0 selection).
    level_images : bool
        Level the image first (default) with ``level_config``; False for levelled input.
    level_config : LevelConfig, optional

    Returns
    -------
    pandas.Series
        Indexed by descriptor name, named after the image. NaN values have their reason in
        ``series.attrs["reasons"]`` (a dict name -> reason).
    """
    if not isinstance(image, AFMImage):
        raise TypeError(f"expected an AFMImage, got {type(image).__name__} (use hybridtmd.io.load_image)")
    fams = resolve_families(families)
    values, reasons = _family_values(image, fams, effective_config(families, config), level_images, level_config)
    series = pd.Series(values, index=_columns(fams), name=image.name, dtype=float)
    series.attrs["reasons"] = reasons
    return series


def _family_names(value: Any) -> bool:
    """True for a list (any non-string iterable) of family names."""
    return not isinstance(value, str) and all(isinstance(name, str) for name in value)


def _columns(families: Iterable[Family]) -> list[str]:
    return [n for f in families for n in f.names]


def is_channel_selection(value: Any) -> bool:
    """True for a mapping channel name -> selection of families (the ``channels`` parameter):
    names are identifiers without ``__`` (they prefix column names)."""
    return isinstance(value, Mapping) and len(value) > 0 and all(
        isinstance(k, str) and k.isidentifier() and "__" not in k and (v is None or isinstance(v, str) or _family_names(v))
        for k, v in value.items())


class DescriptorExtractor(TransformerMixin, BaseEstimator):
    """scikit-learn transformer: a sequence of :class:`AFMImage` (or of mappings channel name ->
    AFMImage) -> a DataFrame of descriptors.

    Parameters
    ----------
    families : str or list of str, optional
        The selection of descriptors (:func:`~hybridtmd.descriptors.registry.resolve_families`):
        family names (their default columns), descriptor names, ``"<family>:all"``. Default
        ``"default"``: every default family. ``None`` or ``"release-0.1.0"``: the 98 columns
        of release 0.1.0 (what its models stored as ``families: None``).
    config : DescriptorConfig, optional
        Descriptor settings (default :class:`DescriptorConfig`; for the release-0.1.0
        selection :meth:`DescriptorConfig.release_0_1_0`).
    level_images : bool
        Level every height image first (default True); False if the input is already levelled.
    level_config : LevelConfig, optional
        Levelling settings (default :class:`LevelConfig`).
    channels : dict, optional
        Multichannel AFM: channel name -> selection of families for that channel, e.g.
        ``{"height": "default", "phase": ["areal", "texture", "spectral"]}``; the input is then
        a sequence of mappings channel name -> AFMImage (``hybridtmd.io.load_channels``;
        names matched case-insensitively; a bare AFMImage is the ``height`` channel). Height
        columns keep their names; another channel's are ``<channel>__<name>`` in the channel's
        unit (``phase__sq`` in degrees). Only families that do not need heights in nm
        (``areal``, ``spectral``, ``texture``) describe other channels; only the height channel
        is levelled. A missing channel gives NaN columns with the reason. None (default): the
        height image alone, ``families`` selects.
    n_jobs : int, optional
        Parallel workers (joblib; None or 1 = sequential, -1 = all cores). Results are identical
        for any ``n_jobs``.
    progress : bool or "auto"
        Show a progress bar; "auto" shows one for 50 images or more.

    Attributes (after ``fit``)
    --------------------------
    families_ : list of Family
        The selected families (restricted to the selected descriptors) as registered at ``fit``:
        families or descriptors registered later do not change a fitted extractor's columns.
        With ``channels``, those of the height channel (or of the first channel).
    channel_families_ : dict
        channel -> its list of Family (``{"height": families_}`` without ``channels``).
    feature_names_out_ : ndarray of str
        Column names, in a stable order (channels in the given order; families in the given
        order; descriptors in registration order).
    feature_families_ : dict
        column -> family name.
    feature_channels_ : dict
        column -> channel name.
    feature_groups_ : dict
        family name -> list of columns (``<channel>__<family>`` for other channels).
    feature_units_ : dict
        column -> unit (a channel's unit from the images' ``z_unit`` seen at ``fit``, else nm).
    n_features_out_ : int

    ``fit`` only validates the parameters and the input and fixes the columns. ``transform``
    also works unfitted: it then uses the families registered at the time of the call.
    """

    _parameter_constraints = {
        "families": [None, str, Check(_family_names, "a list of family or descriptor names")],
        "config": [None, DescriptorConfig],
        "level_images": [bool],
        "level_config": [None, LevelConfig],
        "channels": [None, Check(is_channel_selection, "a dict channel name -> selection of families")],
        "n_jobs": [None, Check(lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and v != 0,
                               "a non-zero int")],
        "progress": [bool, Options(("auto",))],
    }

    def __init__(
        self,
        families: str | Sequence[str] | None = DEFAULT,
        config: DescriptorConfig | None = None,
        level_images: bool = True,
        level_config: LevelConfig | None = None,
        channels: Mapping[str, str | Sequence[str] | None] | None = None,
        n_jobs: int | None = None,
        progress: bool | str = "auto",
    ):
        self.families = families
        self.config = config
        self.level_images = level_images
        self.level_config = level_config
        self.channels = channels
        self.n_jobs = n_jobs
        self.progress = progress

    def _plan(self) -> list[tuple[str | None, list[Family]]]:
        """(channel, families) per channel: ``[(None, families)]`` without ``channels``."""
        if self.channels is None:
            return [(None, [f.copy() for f in resolve_families(self.families)])]
        plan = []
        for channel, selection in self.channels.items():
            channel = channel.casefold()
            families = [f.copy() for f in resolve_families(DEFAULT if selection is None else selection)]
            if channel != HEIGHT_CHANNEL:
                height_only = [f.name for f in families if not f.any_channel]
                if height_only:
                    raise RegistryError(f"families {height_only} describe height maps only, not channel {channel!r}")
            plan.append((channel, families))
        return plan

    def _inputs(self, X: Any) -> list[AFMImage | Mapping[str, AFMImage]]:
        """The input as a list: AFMImages, or with ``channels`` mappings channel -> AFMImage."""
        return check_images(X) if self.channels is None else check_channel_maps(X)

    def fit(self, X: Sequence[AFMImage], y: Any = None) -> DescriptorExtractor:
        validate_params(self, self._parameter_constraints)
        items = self._inputs(X)
        plan = self._plan()
        self.channel_families_ = {channel or HEIGHT_CHANNEL: families for channel, families in plan}
        self.families_ = self.channel_families_.get(HEIGHT_CHANNEL, plan[0][1])
        z_units = {channel: _seen_unit(items, channel) for channel, _ in plan}
        self.channel_units_ = {channel or HEIGHT_CHANNEL: unit for channel, unit in z_units.items()}
        names, families, channels, groups, units = [], {}, {}, {}, {}
        for channel, fams in plan:
            for fam in fams:
                group = fam.name if channel in (None, HEIGHT_CHANNEL) else f"{channel}__{fam.name}"
                for spec in fam.descriptors:
                    column = channel_column(channel, spec)
                    names.append(column)
                    families[column], channels[column] = fam.name, channel or HEIGHT_CHANNEL
                    groups.setdefault(group, []).append(column)
                    units[column] = channel_unit(spec, z_units[channel])
        self.feature_names_out_ = np.asarray(names, dtype=object)
        self.feature_families_, self.feature_channels_ = families, channels
        self.feature_groups_, self.feature_units_ = groups, units
        self.n_features_out_ = len(names)
        return self

    def set_channel_units(self, units: Mapping[str, str]) -> DescriptorExtractor:
        """Set the unit of each channel's values (``{"phase": "deg"}``) and the column units that
        follow: what a loaded model saved, since fitting without data cannot see it."""
        check_is_fitted(self, "channel_units_")
        if not isinstance(units, Mapping):
            raise ValueError(f"channel units must be a mapping channel -> unit, got {units!r}")
        self.channel_units_ |= {str(c): str(u) for c, u in units.items() if c in self.channel_units_}
        for channel, families in self.channel_families_.items():
            for spec in (spec for family in families for spec in family.descriptors):
                self.feature_units_[channel_column(channel, spec)] = channel_unit(spec, self.channel_units_[channel])
        return self

    def _fitted_plan(self) -> list[tuple[str | None, list[Family]]]:
        """The fitted plan, or (unfitted) the one the parameters select now."""
        if hasattr(self, "channel_families_"):
            if self.channels is None:
                return [(None, self.families_)]
            return list(self.channel_families_.items())
        validate_params(self, self._parameter_constraints)
        return self._plan()

    def transform(self, X: Sequence[AFMImage]) -> pd.DataFrame:
        """The descriptor table, one row per image (NaN where a descriptor is undefined; see
        :meth:`transform_with_reasons` for why)."""
        return self.transform_with_reasons(X)[0]

    def transform_with_reasons(self, X: Sequence[AFMImage]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The descriptor table and, one row per NaN value, why it is undefined: a DataFrame with
        columns ``image`` (row position), ``source``, ``feature`` and ``reason``."""
        items = self._inputs(X)
        plan = self._fitted_plan()
        config = effective_config(self.families, self.config)
        warn_coarse_pixels(coarse_pixel_sides(items, config), len(items), config)
        results = list(track(self._results(items, plan, config), total=len(items), description="descriptors",
                             show=len(items) >= 50 if self.progress == "auto" else bool(self.progress)))
        columns = [channel_column(channel, spec) for channel, fams in plan for f in fams for spec in f.descriptors]
        frame = pd.DataFrame([v for v, _ in results], columns=columns, dtype=float)
        rows = [
            {"image": i, "source": _source(items[i]), "feature": name, "reason": reason}
            for i, (_, reasons) in enumerate(results)
            for name, reason in reasons.items()
        ]
        return frame, pd.DataFrame(rows, columns=["image", "source", "feature", "reason"])

    def _results(self, items: list[Any], plan: list[tuple[str | None, list[Family]]],
                 config: DescriptorConfig) -> Iterator[tuple[list[float], dict[str, str]]]:
        """``_compute_one`` of every input, in order, sequentially or in joblib workers."""
        args = (plan, config, self.level_images, self.level_config)
        if self.n_jobs in (None, 1) or len(items) < 2:
            return (_compute_one(item, *args) for item in items)
        from joblib import Parallel, delayed

        # loky workers receive the Family objects themselves, so user-registered families
        # (even ones defined in __main__) work in parallel too
        parallel = Parallel(n_jobs=self.n_jobs, return_as="generator")
        return parallel(delayed(_compute_one)(item, *args) for item in items)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Descriptor column names (available before ``fit``: they depend only on the selection)."""
        if not hasattr(self, "feature_names_out_"):
            return np.asarray([channel_column(channel, spec) for channel, fams in self._plan()
                               for f in fams for spec in f.descriptors], dtype=object)
        return self.feature_names_out_.copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = False
        return tags


def _seen_unit(items: list[Any], channel: str | None) -> str:
    """The unit (``z_unit``, nm by default) of ``channel`` in the first input that has it; nm
    for heights and ``a.u.`` for another channel that no input has (fitted without data)."""
    for item in items:
        image = item if channel is None else channel_image(item, channel)
        if image is not None:
            return str(getattr(image, "z_unit", "nm") or "nm")
    return "nm" if channel in (None, HEIGHT_CHANNEL) else "a.u."


def _source(item: Any) -> str | None:
    if isinstance(item, AFMImage):
        return item.source
    return next((im.source for im in item.values() if im.source), None)


#: Reference pixel sizes already warned about in this process.
_COARSE_WARNED: set[float] = set()


def reset_reference_warnings() -> None:
    """Let the next coarser-than-the-reference case warn again (the warning is given once per run
    for each reference; tests start each case afresh)."""
    _COARSE_WARNED.clear()


def coarse_pixel_sides(items: Sequence[Any], config: DescriptorConfig) -> list[float]:
    """The largest pixel side (nm) of each image (or height channel) coarser than the reference
    pixel size: interpolated up, its reference-scale descriptors miss detail the reference resolves."""
    ref = config.reference_pixel_nm
    if ref is None:
        return []
    images = [item if isinstance(item, AFMImage) else channel_image(item, HEIGHT_CHANNEL) for item in items]
    return [max(im.pixel_size_nm) for im in images if im is not None and max(im.pixel_size_nm) > 1.01 * ref]


#: the start of :func:`warn_coarse_pixels`' message (a filter that leaves it to the caller matches it)
COARSE_PIXELS_MESSAGE = r"\d+ of \d+ images have pixels coarser than the reference"


def warn_coarse_pixels(sides: Sequence[float], n_images: int, config: DescriptorConfig, once: bool = True) -> None:
    """One warning for the ``sides`` of :func:`coarse_pixel_sides` among ``n_images`` images, once
    per run for a reference (not at every fold, fit and predict of one command); ``once=False``
    for a run's own summary (the feature store's totals, after partitions that kept quiet)."""
    if sides and (not once or float(config.reference_pixel_nm) not in _COARSE_WARNED):
        _COARSE_WARNED.add(float(config.reference_pixel_nm))
        warn_at_user(f"{len(sides)} of {n_images} images have pixels coarser than the reference "
                     f"{config.reference_pixel_nm:g} nm (up to {max(sides):.3g} nm): they are interpolated to it, "
                     "and their resolution-invariant descriptors miss the detail between their pixel size and the "
                     "reference (set DescriptorConfig(reference_pixel_nm=...) at or above the coarsest pixel size)",
                     UserWarning)

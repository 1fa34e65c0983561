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
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from .._utils import Check, Options, track, validate_params
from ..io import AFMImage, check_images
from ..preprocess import LevelConfig, level
from .core import DescriptorConfig, Surface
from .registry import Family, resolve_families


def _compute_one(image: AFMImage, families: list[Family], config: DescriptorConfig, level_images: bool,
                 level_config: LevelConfig | None) -> tuple[list[float], dict[str, str]]:
    """Values (in the families' column order) and NaN reasons of one image; never raises."""
    names = _columns(families)
    reasons: dict[str, str] = {}
    try:
        levelled = level(image, level_config) if level_images else image
    except Exception as exc:  # a broken image must not stop the batch: every column NaN
        why = f"levelling failed: {type(exc).__name__}: {exc}"
        return [math.nan] * len(names), dict.fromkeys(names, why)
    surface = Surface(levelled, config)
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


def extract_descriptors(
    image: AFMImage,
    families: str | Sequence[str] | None = None,
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
        Family names (see :func:`list_descriptors`); default: all default families
        (``paper, areal, spectral, grains, texture``).
    config : DescriptorConfig, optional
        Descriptor settings.
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
    values, reasons = _compute_one(image, fams, config or DescriptorConfig(), level_images, level_config)
    series = pd.Series(values, index=_columns(fams), name=image.name, dtype=float)
    series.attrs["reasons"] = reasons
    return series


def _family_names(value: Any) -> bool:
    """True for a list (any non-string iterable) of family names."""
    return not isinstance(value, str) and all(isinstance(name, str) for name in value)


def _columns(families: Iterable[Family]) -> list[str]:
    return [n for f in families for n in f.names]


class DescriptorExtractor(TransformerMixin, BaseEstimator):
    """scikit-learn transformer: a sequence of :class:`AFMImage` -> a DataFrame of descriptors.

    Parameters
    ----------
    families : str or list of str, optional
        Descriptor families (default: all default families, in registry order).
    config : DescriptorConfig, optional
        Descriptor settings.
    level_images : bool
        Level every image first (default True); False if the input is already levelled.
    level_config : LevelConfig, optional
        Levelling settings (default :class:`LevelConfig`).
    n_jobs : int, optional
        Parallel workers (joblib; None or 1 = sequential, -1 = all cores). Results are identical
        for any ``n_jobs``.
    progress : bool or "auto"
        Show a progress bar; "auto" shows one for 50 images or more.

    Attributes (after ``fit``)
    --------------------------
    families_ : list of Family
        The selected families as registered at ``fit`` (:meth:`Family.copy`): families or
        descriptors registered later do not change a fitted extractor's columns.
    feature_names_out_ : ndarray of str
        Column names, in a stable order (families in the given order, descriptors in
        registration order).
    feature_families_ : dict
        column -> family name.
    feature_groups_ : dict
        family name -> list of columns.
    n_features_out_ : int

    ``fit`` only validates the parameters and the input and fixes the columns. ``transform``
    also works unfitted: it then uses the families registered at the time of the call.
    """

    _parameter_constraints = {
        "families": [None, str, Check(_family_names, "a list of family names")],
        "config": [None, DescriptorConfig],
        "level_images": [bool],
        "level_config": [None, LevelConfig],
        "n_jobs": [None, Check(lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and v != 0,
                               "a non-zero int")],
        "progress": [bool, Options(("auto",))],
    }

    def __init__(
        self,
        families: str | Sequence[str] | None = None,
        config: DescriptorConfig | None = None,
        level_images: bool = True,
        level_config: LevelConfig | None = None,
        n_jobs: int | None = None,
        progress: bool | str = "auto",
    ):
        self.families = families
        self.config = config
        self.level_images = level_images
        self.level_config = level_config
        self.n_jobs = n_jobs
        self.progress = progress

    def fit(self, X: Sequence[AFMImage], y: Any = None) -> DescriptorExtractor:
        validate_params(self, self._parameter_constraints)
        check_images(X)
        self.families_ = [f.copy() for f in resolve_families(self.families)]
        names = _columns(self.families_)
        self.feature_names_out_ = np.asarray(names, dtype=object)
        self.feature_families_ = {n: f.name for f in self.families_ for n in f.names}
        self.feature_groups_ = {f.name: list(f.names) for f in self.families_}
        self.n_features_out_ = len(names)
        return self

    def _selected_families(self) -> list[Family]:
        """The fitted families, or (unfitted) the ones ``families`` selects now."""
        if hasattr(self, "families_"):
            return self.families_
        validate_params(self, self._parameter_constraints)
        return resolve_families(self.families)

    def transform(self, X: Sequence[AFMImage]) -> pd.DataFrame:
        """The descriptor table, one row per image (NaN where a descriptor is undefined; see
        :meth:`transform_with_reasons` for why)."""
        return self.transform_with_reasons(X)[0]

    def transform_with_reasons(self, X: Sequence[AFMImage]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The descriptor table and, one row per NaN value, why it is undefined: a DataFrame with
        columns ``image`` (row position), ``source``, ``feature`` and ``reason``."""
        images = check_images(X)
        families = self._selected_families()
        results = list(track(self._results(images, families), total=len(images), description="descriptors",
                             show=len(images) >= 50 if self.progress == "auto" else bool(self.progress)))
        frame = pd.DataFrame([v for v, _ in results], columns=_columns(families), dtype=float)
        rows = [
            {"image": i, "source": images[i].source, "feature": name, "reason": reason}
            for i, (_, reasons) in enumerate(results)
            for name, reason in reasons.items()
        ]
        return frame, pd.DataFrame(rows, columns=["image", "source", "feature", "reason"])

    def _results(self, images: list[AFMImage], families: list[Family]) -> Iterator[tuple[list[float], dict[str, str]]]:
        """``_compute_one`` of every image, in order, sequentially or in joblib workers."""
        args = (families, self.config or DescriptorConfig(), self.level_images, self.level_config)
        if self.n_jobs in (None, 1) or len(images) < 2:
            return (_compute_one(im, *args) for im in images)
        from joblib import Parallel, delayed

        # loky workers receive the Family objects themselves, so user-registered families
        # (even ones defined in __main__) work in parallel too
        parallel = Parallel(n_jobs=self.n_jobs, return_as="generator")
        return parallel(delayed(_compute_one)(im, *args) for im in images)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Descriptor column names (available before ``fit``: they depend only on ``families``)."""
        if not hasattr(self, "feature_names_out_"):
            return np.asarray(_columns(resolve_families(self.families)), dtype=object)
        return self.feature_names_out_.copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = False
        return tags

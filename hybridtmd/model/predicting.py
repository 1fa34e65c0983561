"""Predicting many files: in passes of a bounded number of files, so memory does not grow with
the folder, and without losing the others to one bad file.

``hybridtmd predict`` and the napari plugin's Batch widget both predict through
:func:`predict_files`: each pass reads its files (:func:`hybridtmd.io.load_images`, a file that
cannot be read is skipped with the reader's reason), predicts them together
(:meth:`HybridClassifier.predict_frame`) and, when the pass fails, each image alone
(:func:`predict_isolating`), so that an image the features cannot be computed for is reported
and the other images of its pass are still predicted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .._utils.files import path_text
from ..errors import HybridTMDError
from ..io import load_images
from ..io.files import needed_channels, source_of
from .conformal import set_columns

__all__ = ["PASS_SIZE", "PREDICT_ERRORS", "predict_files", "predict_isolating", "prediction_set_columns"]

#: files read and predicted together in one pass of :func:`predict_files`: bounds the images held
#: in memory (16 scans of 1024² px are ~130 MB of float64 heights) while the embedder still sees
#: batches
PASS_SIZE = 16

#: what a model raises for an image it cannot predict (a feature it cannot compute, a bad array)
#: rather than for a broken model
PREDICT_ERRORS = (HybridTMDError, ValueError, RuntimeError)


def predict_isolating(model: Any, items: Sequence[Any], index: Sequence[str]
                      ) -> tuple[pd.DataFrame | None, list[tuple[str, str]]]:
    """:meth:`~hybridtmd.model.HybridClassifier.predict_frame` of ``items`` (indexed by
    ``index``), predicting each item alone when the batch fails so that one bad item loses only
    itself.

    Returns
    -------
    frame : DataFrame or None
        The predictions of every item that could be predicted, in input order (None when none).
    errors : list of (name, reason)
        The items that could not be, with the error's type and message.
    """
    if not items:
        return None, []
    try:
        return model.predict_frame(list(items), index=list(index)), []
    except PREDICT_ERRORS:
        pass
    frames, errors = [], []
    for item, name in zip(items, index, strict=True):
        try:
            frames.append(model.predict_frame([item], index=[name]))
        except PREDICT_ERRORS as exc:
            errors.append((name, f"{type(exc).__name__}: {exc}"))
    return (pd.concat(frames) if frames else None), errors


def predict_files(model: Any, paths: Sequence[str | Path], *, pass_size: int = PASS_SIZE,
                  progress: Callable[[int], Any] | None = None, **read_options: Any
                  ) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Predict every file, ``pass_size`` files at a time.

    Parameters
    ----------
    model : HybridClassifier
        A fitted image model (``model.features_`` set); a multichannel model's channels are read
        from each file.
    paths : sequence of path
        The files, predicted in this order.
    pass_size : int
        Files read and predicted together: the images in memory at any time.
    progress : callable, optional
        Called after each pass with the number of files it handled.
    **read_options
        Keywords of :func:`hybridtmd.io.load_images` (``pixel_size_nm``, ``channel``, ``z_unit``,
        ``z_scale``).

    Returns
    -------
    table : DataFrame
        One row per predicted file, column ``file`` (its path as text) first, then the columns of
        :meth:`~hybridtmd.model.HybridClassifier.predict_frame`; empty when none was.
    skipped : list of (file, reason)
        The files that could not be read or predicted, in the order met.
    """
    if pass_size < 1:
        raise ValueError(f"pass_size must be a positive number of files, got {pass_size}")
    channels = needed_channels(model.features_)
    frames, skipped = [], []
    paths = list(paths)
    for start in range(0, len(paths), pass_size):
        chunk = paths[start:start + pass_size]
        report = load_images(chunk, on_error="skip", channels=channels, **read_options)
        skipped.extend(report.errors)
        frame, failed = predict_isolating(model, report.images, [path_text(source_of(item))
                                                                       for item in report.images])
        skipped.extend(failed)
        if frame is not None:
            frames.append(frame)
        del report  # the pass's images go before the next pass reads its own
        if progress is not None:
            progress(len(chunk))
    if not frames:
        return pd.DataFrame(columns=["file", "label", "confidence"]), skipped
    return pd.concat(frames).rename_axis("file").reset_index(), skipped


def prediction_set_columns(model: Any, table: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """The conformal prediction-set columns of a prediction table (``set``, ``set_size``,
    ``set_note``: :func:`~hybridtmd.model.conformal.set_columns`, indexed as ``table``), from its
    ``p_<class>`` probabilities - no second pass over the images. A row flagged
    ``out_of_distribution`` gets every class, and its note says why.

    Raises
    ------
    ValueError
        The model has no conformal calibration, or too few calibration images for ``alpha``
        (a :class:`~hybridtmd.model.conformal.ConformalError`, naming the class and the count).
    """
    calibration = getattr(model, "conformal_", None)
    if calibration is None:
        raise ValueError("this model was trained without conformal prediction sets ([model] conformal)")
    proba = table[[f"p_{c}" for c in model.classes_]].to_numpy()
    sets = calibration.image_sets(proba, alpha, model.classes_)
    return set_columns(sets, model.classes_, table.get("out_of_distribution"), index=table.index)

"""What the widgets compute, without napari: a saved model, the model's input for a layer, its
predictions (with the conformal prediction set when the model has one) and a folder's predictions
with the files that could not be read or predicted.

Everything goes through the library: :meth:`HybridClassifier.load`, the model's own features
(levelling, descriptors, embeddings) in :meth:`HybridClassifier.predict_frame`, the prediction
sets of :func:`~hybridtmd.model.predicting.prediction_set_columns`, and for a folder
:func:`hybridtmd.io.readable_files` and :func:`~hybridtmd.model.predicting.predict_files` (passes
of a few files, a bad file skipped with its reason), so a layer or a file gets the prediction,
and a folder the table, that ``hybridtmd predict --alpha`` gives.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import AFMInputError, HybridTMDError
from ..io import load_channels
from ..io.files import needed_channels
from ..io.image import height_images
from ..model import HybridClassifier
from ..model.conformal import DEFAULT_ALPHA
from ..model.predicting import PREDICT_ERRORS, predict_files, prediction_set_columns
from .layers import METADATA_KEY, layer_image, layer_source

#: errors that concern one image (a bad file, a feature that cannot be computed), not the model
IMAGE_ERRORS = PREDICT_ERRORS


def load_image_model(directory: str | Path) -> tuple[HybridClassifier, list[str]]:
    """A saved model that predicts from images, and the warnings loading it gave (one line each).

    Raises
    ------
    HybridTMDError
        Not a model directory, a damaged one, or a model trained on a feature table.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = HybridClassifier.load(directory)
    if model.features_ is None:
        raise AFMInputError(directory, "this model was trained on a feature table; the plugin needs an image model")
    return model, [str(w.message) for w in caught]


def layer_input(model: HybridClassifier, layer: Any) -> Any:
    """What ``model`` predicts from for an image layer: its AFMImage, or, for a multichannel
    model, the channels the model needs read from the layer's file (the selected layer's channel
    as the height channel when it is a height map)."""
    channels = needed_channels(model.features_)
    if channels is None:
        image = layer_image(layer)
        if not image.is_height:
            raise AFMInputError(layer.name, f"a {image.channel} map in {image.z_unit} is not a height map, which "
                                            "this model classifies")
        return image
    source = layer_source(layer)
    if source is None:
        raise AFMInputError(layer.name, f"this model reads the channels {channels} of a file: open the file "
                                        "with the hybridtmd reader")
    info = layer.metadata[METADATA_KEY]
    height = info["channel"] if info["z_unit"] == "nm" else None
    return load_channels(source, channels, channel=height)


def with_sets(model: HybridClassifier, frame: pd.DataFrame, alpha: float = DEFAULT_ALPHA
              ) -> tuple[pd.DataFrame, str | None]:
    """``frame`` (predictions of :meth:`HybridClassifier.predict_frame`) with the conformal
    prediction-set columns ``set``, ``set_size``, ``set_note`` when the model has a conformal
    calibration (:func:`~hybridtmd.model.predicting.prediction_set_columns`, as ``hybridtmd
    predict --alpha``); and why there are none when it has one that cannot serve ``alpha``."""
    if getattr(model, "conformal_", None) is None or frame.empty:
        return frame, None
    try:
        sets = prediction_set_columns(model, frame, alpha)
    except (HybridTMDError, ValueError) as exc:  # too few calibration images for alpha
        return frame, f"no prediction sets at alpha {alpha:g}: {exc}"
    return pd.concat([frame, sets], axis=1), None


def summary_line(name: str, row: pd.Series) -> str:
    """One prediction in words: label, confidence, set and OOD flag."""
    text = f"{name}: {row['label']} (confidence {row['confidence']:.2f})"
    if "set" in row:
        text += f", set {{{row['set'].replace('|', ', ')}}}"
    if "out_of_distribution" in row:
        flagged = bool(row["out_of_distribution"])
        text += ", OUT OF DISTRIBUTION: do not trust the label" if flagged else ", in distribution"
    return text


def predict_folder_files(model: HybridClassifier, paths: Sequence[Path], alpha: float = DEFAULT_ALPHA,
                         progress: Callable[[int], Any] | None = None
                         ) -> tuple[pd.DataFrame, list[tuple[str, str]], str | None]:
    """Predict the files (:func:`~hybridtmd.model.predicting.predict_files`: passes of a few
    files; ``progress(n)`` after each pass of ``n`` files): the table with its prediction sets
    when the model makes them, the skipped files as ``(file, reason)`` and why there are no sets
    (None when there are, or the model makes none)."""
    table, skipped = predict_files(model, paths, progress=progress)
    table, no_sets = with_sets(model, table, alpha)
    return table, skipped, no_sets


def height_of(item: Any) -> Any:
    """The height AFMImage of a model input (an AFMImage, or a mapping channel -> AFMImage)."""
    return height_images([item])[0]

"""What the widgets compute, without napari: a saved model, the model's input for a layer, its
predictions (with the conformal prediction set when the model has one) and a folder's predictions
with the files that could not be read or predicted.

Everything goes through the library: :meth:`HybridClassifier.load`, the model's own features
(levelling, descriptors, embeddings) in :meth:`HybridClassifier.predict_frame`, and
:func:`hybridtmd.io.load_images` for the files of a folder, so a layer or a file gets the
prediction ``hybridtmd predict`` gives it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import AFMInputError, HybridTMDError
from ..io import load_channels, load_images
from ..io.image import height_images
from ..io.readers import registered_suffix
from ..model import HybridClassifier
from ..model.conformal import set_labels
from .layers import METADATA_KEY, layer_image, layer_source

#: errors that concern one image (a bad file, a feature that cannot be computed), not the model
IMAGE_ERRORS = (HybridTMDError, ValueError, RuntimeError)


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


def needed_channels(model: HybridClassifier) -> list[str] | None:
    """The channels a multichannel model reads from each file; None for height maps only."""
    channels = getattr(model.features_, "channels", None)
    return None if channels is None else list(channels)


def layer_input(model: HybridClassifier, layer: Any) -> Any:
    """What ``model`` predicts from for an image layer: its AFMImage, or, for a multichannel
    model, the channels the model needs read from the layer's file (the selected layer's channel
    as the height channel when it is a height map)."""
    channels = needed_channels(model)
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


def prediction_sets(model: HybridClassifier, frame: pd.DataFrame, alpha: float = 0.1) -> list[str] | None:
    """Each image's conformal prediction set as ``A|B`` text, from the probabilities of
    :meth:`HybridClassifier.predict_frame` (``frame``; no second pass over the images), when the
    model has a conformal calibration; None otherwise."""
    calibration = getattr(model, "conformal_", None)
    if calibration is None:
        return None
    proba = frame[[f"p_{c}" for c in model.classes_]].to_numpy()
    try:
        sets = calibration.image_sets(proba, alpha, model.classes_)
    except (HybridTMDError, ValueError):  # too few calibration images for alpha
        return None
    return set_labels(sets, model.classes_)


def predict_items(model: HybridClassifier, items: Sequence[Any], names: Sequence[str]) -> pd.DataFrame:
    """:meth:`HybridClassifier.predict_frame` of ``items`` indexed by ``names``, with a
    ``prediction_set`` column when the model makes sets."""
    frame = model.predict_frame(list(items), index=list(names))
    sets = prediction_sets(model, frame)
    if sets is not None:
        frame.insert(2, "prediction_set", sets)
    return frame


def summary_line(name: str, row: pd.Series) -> str:
    """One prediction in words: label, confidence, set and OOD flag."""
    text = f"{name}: {row['label']} (confidence {row['confidence']:.2f})"
    if "prediction_set" in row:
        text += f", set {{{row['prediction_set'].replace('|', ', ')}}}"
    if "out_of_distribution" in row:
        flagged = bool(row["out_of_distribution"])
        text += ", OUT OF DISTRIBUTION: do not trust the label" if flagged else ", in distribution"
    return text


def folder_files(folder: str | Path) -> list[Path]:
    """The files of ``folder`` that hybridtmd has a reader for (hidden files left out), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AFMInputError(folder, "not a folder")
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and registered_suffix(p) is not None)


def predict_files(model: HybridClassifier, paths: Sequence[Path],
                  progress: Callable[[int], Any] | None = None) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Predict every file: the table (one row per predicted file, column ``file`` first) and the
    skipped files as ``(file, reason)``; ``progress(i)`` is called after each file."""
    channels = needed_channels(model)
    frames, skipped = [], []
    for i, path in enumerate(paths, start=1):
        report = load_images([path], channels=channels, on_error="skip")
        skipped.extend(report.errors)
        if report.images:
            try:
                frames.append(predict_items(model, report.images, [str(path)]))
            except IMAGE_ERRORS as exc:
                skipped.append((str(path), f"{type(exc).__name__}: {exc}"))
        if progress is not None:
            progress(i)
    if not frames:
        return pd.DataFrame(columns=["file", "label", "confidence"]), skipped
    return pd.concat(frames).rename_axis("file").reset_index(), skipped


def height_of(item: Any) -> Any:
    """The height AFMImage of a model input (an AFMImage, or a mapping channel -> AFMImage)."""
    return height_images([item])[0]

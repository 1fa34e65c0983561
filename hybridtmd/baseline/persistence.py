"""The saved-model format of :class:`~hybridtmd.baseline.FineTuneClassifier`: the model directory of
:mod:`hybridtmd.model.persistence` (the hybrid's: a manifest with each file's SHA-256 and one
digest over it, HMAC-signed with a key, written whole and swapped in atomically, every older
format read), holding ``model.pt`` (a ``state_dict``, loaded with ``weights_only=True``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..descriptors.release import files_of_finetune_format_1
from ..model.persistence import read_manifest, write_manifest, write_model_directory

FORMAT_NAME = "hybridtmd.FineTuneClassifier"
#: Version of the saved-model layout :func:`write_saved` writes; all older ones load.
#: 2: the hybrid's model directory (``files``, ``directory_digest``, signing, atomic swap);
#: 1: ``manifest.json`` with the ``weights_sha256`` of ``model.pt`` only.
MODEL_FORMAT_VERSION = 2
#: the first format whose manifest carries a digest over the whole model directory
DIGEST_SINCE = 2
WEIGHTS_NAME = "model.pt"
REQUIRED_ENTRIES = ("params", "classes", "classes_dtype", "backbone_used", "backbone_weights_id", "normalisation",
                    "input_size", "n_features")
#: the distributions whose versions a saved model records (beside hybridtmd, Python and numpy)
LIBRARIES = ("torch", "torchvision", "timm")


def write_saved(directory: str | Path, write_weights: Callable[[Path], Any], entries: dict[str, Any],
                key: str | bytes | None = None) -> Path:
    """Save a fitted classifier into ``directory`` as a whole: ``write_weights(path)`` writes
    ``model.pt``, the manifest holds ``entries``; signed with ``key`` (or ``$HYBRIDTMD_MODEL_KEY``)."""
    def write(target: Path) -> None:
        write_weights(target / WEIGHTS_NAME)
        write_manifest(target, FORMAT_NAME, MODEL_FORMAT_VERSION, entries, files=(WEIGHTS_NAME,),
                       libraries=LIBRARIES, key=key)

    return write_model_directory(directory, write)


def read_saved(directory: str | Path, key: str | bytes | None = None) -> dict[str, Any]:
    """The checked manifest of a saved classifier (:func:`hybridtmd.model.persistence.read_manifest`:
    format, version, digest or signature, required entries, the SHA-256 of ``model.pt``); format 1
    (``weights_sha256`` instead of ``files``) is read as its successor would list it."""
    return read_manifest(Path(directory), FORMAT_NAME, MODEL_FORMAT_VERSION, REQUIRED_ENTRIES, (WEIGHTS_NAME,),
                         key=key, digest_since=DIGEST_SINCE,
                         upgrade=lambda *read: files_of_finetune_format_1(*read, weights_name=WEIGHTS_NAME))


def jsonable_params(params: dict[str, Any]) -> dict[str, Any]:
    """Constructor parameters (``get_params()``) as JSON values: paths as strings, a class-weight
    dict as ``[label, weight]`` pairs (labels need not be strings), a RandomState object as None."""
    params = dict(params)
    if params["weights"] is not None:
        params["weights"] = str(params["weights"])
    if isinstance(params["class_weight"], dict):  # JSON object keys must be strings; labels may not be
        params["class_weight"] = [[k, v] for k, v in params["class_weight"].items()]
    params["clip_percentiles"] = list(params["clip_percentiles"])
    if not (params["random_state"] is None or isinstance(params["random_state"], (int, np.integer))):
        params["random_state"] = None  # a RandomState object is not serialisable; it was consumed anyway
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}


def restore_fitted(clf: Any, manifest: dict[str, Any]) -> None:
    """Set the fitted attributes of ``clf`` (all but the network) recorded in ``manifest``."""
    dtype = manifest["classes_dtype"]
    clf.classes_ = np.asarray(manifest["classes"], dtype=object if dtype == "object" else np.dtype(dtype))
    clf.backbone_used_ = str(manifest["backbone_used"])
    clf.backbone_weights_id_ = str(manifest["backbone_weights_id"])
    clf.input_size_ = int(manifest["input_size"])
    clf.n_features_ = int(manifest["n_features"])
    norm = manifest["normalisation"]
    clf._norm = (tuple(float(v) for v in norm["mean"]), tuple(float(v) for v in norm["std"]))
    clf.n_epochs_ = manifest.get("n_epochs")
    clf.best_epoch_ = manifest.get("best_epoch")
    clf.history_ = list(manifest.get("history") or [])
    clf.stages_ = list(manifest.get("stages") or [])
    clf.flops_per_image_ = manifest.get("flops_per_image")
    clf.elements_ = [str(e) for e in manifest.get("elements") or []]  # absent before the multi-label head

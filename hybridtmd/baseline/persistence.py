"""The saved-model format of :class:`~hybridtmd.baseline.FineTuneClassifier`: its manifest, checked
on load, and the versions recorded in it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._utils import file_sha256, json_loads
from ..errors import ModelFileError
from ..model.leftovers import check_format_version

#: Version of the saved-model layout (``manifest.json`` + ``model.pt``).
MODEL_FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
WEIGHTS_NAME = "model.pt"
REQUIRED_ENTRIES = ("format", "format_version", "params", "classes", "classes_dtype", "backbone_used",
                    "backbone_weights_id", "normalisation", "input_size", "n_features", "weights_sha256")


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


def read_manifest(manifest_path: Path, weights_path: Path) -> dict[str, Any]:
    """The manifest of a saved classifier, checked: readable, of this format and version, with
    every required entry, and with a weights file whose SHA-256 is the recorded one."""
    try:
        manifest = json_loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{manifest_path}: missing; not a saved FineTuneClassifier") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # malformed, or nested too deeply
        raise ModelFileError(f"{manifest_path}: unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != "hybridtmd.FineTuneClassifier":
        raise ModelFileError(f"{manifest_path}: not a FineTuneClassifier manifest")
    missing = [k for k in REQUIRED_ENTRIES if k not in manifest]
    if missing:
        raise ModelFileError(f"{manifest_path}: missing entries {missing}")
    check_format_version(manifest_path, manifest["format_version"], MODEL_FORMAT_VERSION, MODEL_FORMAT_VERSION)
    if not weights_path.is_file():
        raise ModelFileError(f"{weights_path}: missing (the manifest {manifest_path} refers to it)")
    if file_sha256(weights_path) != manifest["weights_sha256"]:
        raise ModelFileError(f"{weights_path}: SHA-256 differs from the one in {manifest_path}; the weights "
                             f"were modified or belong to another model")
    return manifest


def package_versions() -> dict[str, str]:
    """Installed versions of hybridtmd and the torch stack, recorded in a saved model."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("hybridtmd", "torch", "torchvision", "timm"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


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

"""End-to-end fine-tuning of an ImageNet CNN: the baseline the hybrid classifier is compared with.

:class:`FineTuneClassifier` is a scikit-learn classifier on AFM height maps (sequences of
:class:`~hybridtmd.io.AFMImage`, levelled beforehand, e.g. by
:class:`~hybridtmd.preprocess.Preprocessor`) that trains a pretrained CNN with a small head, as in
Moses et al.'s transfer-learning study of TMD films (repository
``reinhart-group/Transfer-Learning-for-Multi-material-Classification-of-Transition-Metal-Dichalcogenides``,
``codes/utils.py`` and ``Train/``).

Public API
----------
``FineTuneClassifier(backbone="resnet18", *, weights=None, fallback="efficientnet_lite0",
frozen=False, epochs=60, batch_size=32, lr=7.5e-5, hidden=100, dropout=0.0, patience=10,
validation_fraction=0.2, augment=True, class_weight="balanced", input_size=None,
clip_percentiles=(1.0, 99.0), device="auto", random_state=0, progress=None, n_threads=None)``

* ``fit(images, y, groups=None)`` -> self; ``predict(images)`` -> labels;
  ``predict_proba(images)`` -> ``(n, n_classes)`` in the order of ``classes_``;
  ``score(images, y)`` -> accuracy.
* ``fit_continue(images, y, groups=None)`` -> self: the paper's *sequential* modality (below).
* ``save(directory)`` -> Path; ``FineTuneClassifier.load(directory)`` -> fitted classifier.

Module functions: :func:`estimate_flops` (forward FLOPs per image of a network or backbone),
:func:`grouped_validation_split` (the train/validation split ``fit`` uses),
:data:`TRAIN_STEP_FLOPS_FACTOR`.

Fitted attributes: ``classes_``, ``backbone_used_`` (the backbone actually trained: the requested
one, or the fallback when its weights are absent), ``backbone_weights_id_``, ``input_size_``,
``n_features_`` (backbone feature length), ``device_``, ``model_`` (the ``torch.nn.Module``:
``features`` then ``head``), ``history_`` (one dict per epoch of the last ``fit``/``fit_continue``:
``epoch, train_loss, val_loss, val_accuracy, seconds``; validation entries are None without a
validation set), ``n_epochs_`` (epochs run), ``best_epoch_`` (1-based epoch whose weights were
kept), ``validation_indices_`` (positions in the last training input held out for early
stopping), ``stages_`` (one summary dict per ``fit``/``fit_continue`` call), ``fit_seconds_``,
``flops_per_image_`` (forward FLOPs of the whole network for one image, i.e. prediction cost) and
``fit_flops_`` (approximate FLOPs spent by the last ``fit``/``fit_continue``).

Training recipe (the paper's, with the differences stated)
----------------------------------------------------------
* **Network**: the backbone's global-average-pooled features, then the head
  ``Linear(features, hidden=100) -> ReLU -> Dropout(dropout=0) -> Linear(100, n_classes)``
  (the paper's ``fc``). Backbones come from :mod:`hybridtmd.embeddings` (``resnet18`` ... as in
  the paper; ResNet weights are read from a local file only). When the requested backbone's
  weights are not on this machine and no ``weights`` file was given, the ``fallback`` backbone
  (the offline ``efficientnet_lite0``) is trained instead, a :class:`BackboneFallbackWarning` is
  issued once per process and backbone, and ``backbone_used_`` says so. ``fallback=None`` raises
  :class:`~hybridtmd.embeddings.WeightsNotFoundError` instead.
* **Input**: exactly the frozen-embedding preprocessing (:func:`~hybridtmd.preprocess.normalise_height`
  then :func:`~hybridtmd.embeddings.to_input_tensor`): per-image percentile clipping to [0, 1],
  bilinear resize to ``input_size`` (the backbone's 224 by default), grey repeated to 3 channels,
  ImageNet mean/std. All inputs of a fit are held in memory (about 0.6 MB per image at 224 px).
* **Optimisation**: Adam, ``lr=7.5e-5``, batches of 32, up to 60 epochs, cross-entropy. With
  ``class_weight="balanced"`` each class's loss weight is ``n_train / (n_classes * n_class)`` (the
  paper over-sampled rare classes with a ``WeightedRandomSampler`` instead; same expected
  gradient, less variance). A dict ``{label: weight}`` or None are also accepted.
* **Augmentation** (``augment=True``): each training image is shown as one of the 8 dihedral
  transforms (4 rotations by 90 degrees, optionally mirrored), drawn uniformly per image and
  epoch. The paper used random horizontal and vertical flips; adding the 90-degree rotations is
  physically justified (an AFM scan has no preferred in-plane orientation) and makes the draw
  uniform over the whole symmetry group.
* **Early stopping**: groups (sample ids) are split into train and validation by
  :func:`grouped_validation_split` (``validation_fraction`` of each class's groups, never a group
  on both sides, checked by :func:`~hybridtmd.evaluation.check_grouped_split`). After each epoch
  the class-weighted validation loss is computed; the weights of the epoch with the lowest one
  are restored at the end, and training stops after ``patience`` epochs without improvement.
  ``patience=None`` runs all ``epochs`` and still keeps the best epoch (the paper's procedure,
  which kept the weights of the best validation F1/loss epoch). Without ``groups`` every image is
  its own group, which leaks between images of one sample: pass ``groups``.
  ``validation_fraction=0`` trains all ``epochs`` on everything and keeps the last weights.
* **frozen=True** (the paper's "transfer" comparison): only the head is trained; the backbone
  stays in eval mode, so its weights *and* batch-norm statistics are unchanged. The features of
  each (image, dihedral view) are computed once and reused in later epochs (exactly the same
  training, at most 8 backbone passes per image instead of one per epoch).
* **Determinism**: with an integer ``random_state`` two fits on the same machine, device and
  thread count give identical weights: the global torch RNG is forked and seeded for the fit
  (head initialisation, dropout) and restored afterwards, shuffling and augmentation draw from a
  dedicated ``torch.Generator``, and ``torch.use_deterministic_algorithms`` is on (warn-only,
  restored afterwards). ``n_threads`` sets torch's CPU threads during fit/predict.
* **Device**: ``"auto"`` uses CUDA when available, else CPU.

Sequential modality
-------------------
The paper's best fine-tuned model (0.93 test accuracy) was trained on 2 classes, then continued
on 3, 4 and 5 from the previous weights. ``fit_continue(images, y, groups)`` does this: it keeps
the current network, extends ``classes_`` by the labels of ``y`` not seen before (appended in
sorted order, so ``classes_`` is then in order of appearance, not sorted), copies the output
rows (weights and bias) of the known classes, initialises the rows of the new classes as a fresh
``Linear`` layer would, and trains with a new Adam optimiser, split and early stopping. (The paper
replaced the whole last layer; copying the known rows keeps what was learnt about those classes
and is otherwise the same.) The architecture (backbone, ``hidden``, ``dropout``, ``input_size``)
is the one of the first fit; the training parameters (``epochs``, ``lr``, ``frozen``,
``patience``...) are read again at each call, so they can be changed with ``set_params`` between
stages. Each call appends to ``stages_``. On an unfitted classifier it is ``fit``. Example::

    clf = FineTuneClassifier(random_state=0)
    clf.fit(images[two], y[two], groups[two])
    for subset in (three, four, five):
        clf.fit_continue(images[subset], y[subset], groups[subset])

Cost accounting
---------------
:func:`estimate_flops` counts the floating-point operations of one forward pass with
``torch.utils.flop_counter.FlopCounterMode`` (matrix multiplications and convolutions, 2 FLOPs
per multiply-add; element-wise operations are not counted, so it slightly underestimates). A
training step (forward + backward) is taken as :data:`TRAIN_STEP_FLOPS_FACTOR` = 3 forwards.
``fit_flops_`` adds up training steps and validation forwards of the last fit (for
``frozen=True``: the backbone passes actually done plus the head's steps); prediction costs
``flops_per_image_`` per image.

Saved models
------------
``save(directory)`` writes ``directory/model.pt`` (the network's ``state_dict``, tensors only,
via ``torch.save``) and ``directory/manifest.json`` (format version, constructor parameters,
classes, backbone used and its weights id, input size, feature length, history, stages, SHA-256
of ``model.pt``, versions of hybridtmd/torch/torchvision/timm), each written atomically.
``load`` reads the tensors with ``torch.load(..., weights_only=True)`` (never unpickles code),
rebuilds the architecture without needing the pretrained weights file for the built-in
backbones, and raises :class:`ModelFileError` naming the file when the manifest is missing,
unreadable or inconsistent, or ``model.pt`` does not match its recorded digest.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._utils import atomic_path, atomic_write_text
from .embeddings import (
    Backbone,
    WeightsNotFoundError,
    _pooled,
    create_backbone,
    file_sha256,
    to_input_tensor,
)
from .errors import ModelFileError
from .evaluation import Evaluation
from .io import AFMImage
from .preprocess import check_images, normalise_height
from .splits import grouped_validation_split

if TYPE_CHECKING:  # torch is imported lazily, as in hybridtmd.embeddings
    import torch
    from torch import nn

#: A training step (forward + backward + update) costs about this many forward passes.
TRAIN_STEP_FLOPS_FACTOR = 3
#: Version of the saved-model layout (``manifest.json`` + ``model.pt``).
MODEL_FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
WEIGHTS_NAME = "model.pt"

_FALLBACK_WARNED: set[tuple[str, str]] = set()


class BackboneFallbackWarning(UserWarning):
    """The requested backbone's weights are absent; the fallback backbone was trained instead."""


# --------------------------------------------------------------------------------------------
# Helpers usable on their own
# --------------------------------------------------------------------------------------------


def estimate_flops(model_or_backbone: nn.Module | Backbone | str, input_size: int = 224) -> int:
    """Forward FLOPs for one ``(3, input_size, input_size)`` image.

    ``model_or_backbone`` is a ``torch.nn.Module``, a :class:`~hybridtmd.embeddings.Backbone` or a
    registry name (built-in names need no weights file: only the architecture is built). Counted
    with ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add, convolutions and
    matrix products only). Multiply by :data:`TRAIN_STEP_FLOPS_FACTOR` for a training step.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if isinstance(model_or_backbone, str):
        module = _architecture(model_or_backbone)
    elif isinstance(model_or_backbone, Backbone):
        module = _pooled(model_or_backbone.build())
    else:
        module = model_or_backbone
    device = next(iter(module.parameters()), torch.zeros(())).device
    was_training = module.training
    module.eval()  # a train-mode pass would update batch-norm statistics
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            module(torch.zeros(1, 3, int(input_size), int(input_size), device=device))
    finally:
        module.train(was_training)
    return int(counter.get_total_flops())


def _architecture(name: str) -> nn.Module:
    """Backbone ``name`` as a pooled feature extractor with *random* weights where the
    architecture is known without a weights file (built-ins), else built from the registry."""
    if name == "efficientnet_lite0":
        import timm

        module = timm.create_model("efficientnet_lite0", pretrained=False)
        module.reset_classifier(0)  # as load_efficientnet_lite0: forward ends at the pooled features
    elif name.startswith("resnet") and name[6:].isdigit():
        import torch
        import torchvision

        module = getattr(torchvision.models, name)(weights=None)
        module.fc = torch.nn.Identity()  # as embeddings._build_resnet
    else:
        module = create_backbone(name).build()
    return _pooled(module).eval()


def _head(n_features: int, hidden: int, n_classes: int, dropout: float) -> nn.Module:
    from torch import nn

    return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))


def _network(features: nn.Module, head: nn.Module) -> nn.Module:
    from torch import nn

    return nn.Sequential(OrderedDict(features=features, head=head))


def _d4(x: torch.Tensor, view: int) -> torch.Tensor:
    """Dihedral transform number ``view`` (0-7) of (..., H, W), in the order of
    :func:`hybridtmd.embeddings.d4_views`: rotations by ``view % 4`` quarter turns, mirrored first
    when ``view >= 4``."""
    import torch

    if view >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, view % 4, dims=(-2, -1)) if view % 4 else x


def _batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """``order`` cut into batches; a final batch of one joins the previous one (batch norm cannot
    normalise a single image whose feature map is 1x1)."""
    parts = list(order.split(batch_size))
    if len(parts) > 1 and len(parts[-1]) == 1:
        parts[-2:] = [order[-(len(parts[-2]) + 1):]]
    return parts


@contextlib.contextmanager
def _torch_settings(n_threads: int | None, seed: int | None = None, device: str = "cpu") -> Iterator[None]:
    """Thread count, and with ``seed`` a forked, seeded global RNG and deterministic algorithms,
    all restored on exit so a fit leaves the caller's torch state untouched."""
    import torch

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if n_threads is not None:
        torch.set_num_threads(int(n_threads))
    try:
        if seed is None:
            yield
            return
        devices = [torch.cuda.current_device()] if device == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            # warn_only: an op without a deterministic kernel (some CUDA ones) warns instead of failing
            torch.use_deterministic_algorithms(True, warn_only=True)
            yield
    finally:
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.set_num_threads(old_threads)


class _EpochProgress:
    """Rich progress bar over training batches with epoch, loss and validation accuracy."""

    def __init__(self, show: bool, total: int, title: str):
        self.show, self.total, self.title = show, total, title
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _EpochProgress:
        if self.show:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True))
            self._bar.__enter__()
            self._task = self._bar.add_task(self.title, total=self.total, info="")
        return self

    def update(self, advance: int = 0, info: str | None = None) -> None:
        if self._bar is not None:
            fields = {} if info is None else {"info": info}
            self._bar.update(self._task, advance=advance, **fields)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# --------------------------------------------------------------------------------------------
# The classifier
# --------------------------------------------------------------------------------------------


class FineTuneClassifier(ClassifierMixin, BaseEstimator):
    """Fine-tune a pretrained CNN end to end on AFM height maps (scikit-learn classifier).

    See the module docstring for the recipe, the sequential modality, cost accounting and the
    saved-model format.

    Parameters
    ----------
    backbone : str
        Registry name (:func:`hybridtmd.embeddings.list_backbones`); ``resnet18`` as in the paper.
    weights : path, optional
        Pretrained weights file for ``backbone``; default: the hub-cache or bundled file. An
        explicit file is never replaced by the fallback.
    fallback : str or None
        Backbone trained when ``backbone``'s weights are absent (``efficientnet_lite0``: offline);
        None raises instead.
    frozen : bool
        Train only the head (backbone weights and batch-norm statistics fixed).
    epochs : int
        Maximum number of epochs.
    batch_size : int
        Training and prediction batch size.
    lr : float
        Adam learning rate.
    hidden : int
        Width of the head's hidden layer.
    dropout : float
        Dropout probability before the output layer (the paper: 0).
    patience : int or None
        Stop after this many epochs without a lower validation loss; None: run all epochs.
    validation_fraction : float
        Fraction of each class's groups held out for early stopping, in [0, 1).
    augment : bool
        Random dihedral view (flips and 90-degree rotations) of each training image per epoch.
    class_weight : "balanced", dict or None
        Loss weight per class (``{label: weight}``); balanced: inversely proportional to counts.
    input_size : int, optional
        Square CNN input side; default the backbone's (224).
    clip_percentiles : (low, high)
        Per-image height percentiles mapped to 0 and 1.
    device : "auto" | "cpu" | "cuda"
        ``auto``: CUDA when available.
    random_state : int, RandomState or None
        Seed of everything random in ``fit``; an int makes fits repeatable.
    progress : bool, optional
        Rich progress bar on stderr; default shown when stderr is a terminal.
    n_threads : int, optional
        torch CPU threads during fit/predict (default: torch's setting).
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        *,
        weights: str | Path | None = None,
        fallback: str | None = "efficientnet_lite0",
        frozen: bool = False,
        epochs: int = 60,
        batch_size: int = 32,
        lr: float = 7.5e-5,
        hidden: int = 100,
        dropout: float = 0.0,
        patience: int | None = 10,
        validation_fraction: float = 0.2,
        augment: bool = True,
        class_weight: Literal["balanced"] | dict[Any, float] | None = "balanced",
        input_size: int | None = None,
        clip_percentiles: tuple[float, float] = (1.0, 99.0),
        device: Literal["auto", "cpu", "cuda"] = "auto",
        random_state: int | np.random.RandomState | None = 0,
        progress: bool | None = None,
        n_threads: int | None = None,
    ):
        self.backbone = backbone
        self.weights = weights
        self.fallback = fallback
        self.frozen = frozen
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.hidden = hidden
        self.dropout = dropout
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.augment = augment
        self.class_weight = class_weight
        self.input_size = input_size
        self.clip_percentiles = clip_percentiles
        self.device = device
        self.random_state = random_state
        self.progress = progress
        self.n_threads = n_threads

    # ---- scikit-learn API -------------------------------------------------------------------

    def fit(self, X: Sequence[AFMImage], y: Any, groups: Any = None) -> FineTuneClassifier:
        """Fine-tune the pretrained backbone and a new head on ``X`` (images), ``y`` (labels of any
        hashable type) and ``groups`` (sample ids, for the validation split)."""
        images, y, groups = self._check_fit_input(X, y, groups)
        self._validate_params()
        self.__dict__.pop("stages_", None)
        backbone = self._resolve_backbone()
        self.backbone_used_ = backbone.name
        self.backbone_weights_id_ = backbone.weights_id
        self.input_size_ = int(self.input_size or backbone.input_size)
        self._norm = (backbone.mean, backbone.std)
        self.device_ = self._pick_device()
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"fit needs at least 2 classes, got {self.classes_.tolist()}")
        seed = self._seed()
        with _torch_settings(self.n_threads, seed, self.device_):
            features = _pooled(backbone.build())
            self.n_features_ = int(backbone.embedding_dim)
            self.model_ = _network(features, _head(self.n_features_, int(self.hidden), len(self.classes_),
                                                   float(self.dropout))).to(self.device_)
            self._train(images, y, groups, seed, stage="fit")
        return self

    def fit_continue(self, X: Sequence[AFMImage], y: Any, groups: Any = None) -> FineTuneClassifier:
        """Continue training the fitted network on new data that may contain new classes (the
        paper's sequential modality; see the module docstring). Unfitted: same as ``fit``."""
        if not hasattr(self, "model_"):
            return self.fit(X, y, groups)
        images, y, groups = self._check_fit_input(X, y, groups)
        self._validate_params()
        import torch
        from torch import nn

        known = self.classes_.tolist()
        new = [c for c in np.unique(y).tolist() if c not in known]
        seed = self._seed()
        with _torch_settings(self.n_threads, seed, self.device_):
            if new:
                old_out = self.model_.head[-1]
                out = nn.Linear(old_out.in_features, len(known) + len(new)).to(self.device_)
                with torch.no_grad():  # known rows carry over; new rows keep Linear's fresh initialisation
                    out.weight[: len(known)] = old_out.weight
                    out.bias[: len(known)] = old_out.bias
                self.model_.head[-1] = out
                merged = np.asarray(known + new)  # numpy picks a string width that fits the new labels
                self.classes_ = merged.astype(object) if self.classes_.dtype == object else merged
            self._train(images, y, groups, seed, stage="continue")
        return self

    def predict_proba(self, X: Sequence[AFMImage]) -> np.ndarray:
        """Class probabilities (softmax), ``(n_images, n_classes)``, columns in ``classes_`` order."""
        check_is_fitted(self, "model_")
        import torch

        images = check_images(X)
        with _torch_settings(self.n_threads):
            x = self._inputs(images)
            self.model_.eval()
            out = []
            with torch.inference_mode():
                for idx in _batches(torch.arange(len(x)), int(self.batch_size)):
                    out.append(torch.softmax(self.model_(x[idx].to(self.device_)).float(), dim=1).cpu())
        return torch.cat(out).numpy().astype(np.float64) if out else np.empty((0, len(self.classes_)))

    def predict(self, X: Sequence[AFMImage]) -> np.ndarray:
        """Most probable label of each image."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.non_deterministic = self.random_state is None
        return tags

    # ---- persistence ------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write ``model.pt`` (state_dict) and ``manifest.json`` into ``directory`` (created),
        each atomically. Returns the directory."""
        check_is_fitted(self, "model_")
        import torch

        directory = Path(directory)
        weights_path = directory / WEIGHTS_NAME
        state = {k: v.detach().cpu() for k, v in self.model_.state_dict().items()}
        with atomic_path(weights_path) as tmp:
            torch.save(state, tmp)
        manifest = {
            "format": "hybridtmd.FineTuneClassifier",
            "format_version": MODEL_FORMAT_VERSION,
            "params": self._jsonable_params(),
            "classes": self.classes_.tolist(),
            "classes_dtype": "object" if self.classes_.dtype == object else self.classes_.dtype.str,
            "backbone_used": self.backbone_used_,
            "backbone_weights_id": self.backbone_weights_id_,
            "normalisation": {"mean": list(self._norm[0]), "std": list(self._norm[1])},
            "input_size": self.input_size_,
            "n_features": self.n_features_,
            "n_epochs": self.n_epochs_,
            "best_epoch": self.best_epoch_,
            "history": self.history_,
            "stages": self.stages_,
            "flops_per_image": self.flops_per_image_,
            "weights_file": WEIGHTS_NAME,
            "weights_sha256": file_sha256(weights_path),
            "versions": _versions(),
        }
        atomic_write_text(directory / MANIFEST_NAME, json.dumps(manifest, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, device: Literal["auto", "cpu", "cuda"] | None = None) -> FineTuneClassifier:
        """A classifier saved by :meth:`save`, ready to predict (or to ``fit_continue``).
        ``device`` overrides the saved setting."""
        import torch

        directory = Path(directory)
        manifest_path = directory / MANIFEST_NAME
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelFileError(f"{manifest_path}: missing; not a saved FineTuneClassifier") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFileError(f"{manifest_path}: unreadable manifest ({exc})") from exc
        required = ("format", "format_version", "params", "classes", "classes_dtype", "backbone_used",
                    "backbone_weights_id", "normalisation", "input_size", "n_features", "weights_sha256")
        if not isinstance(manifest, dict) or manifest.get("format") != "hybridtmd.FineTuneClassifier":
            raise ModelFileError(f"{manifest_path}: not a FineTuneClassifier manifest")
        missing = [k for k in required if k not in manifest]
        if missing:
            raise ModelFileError(f"{manifest_path}: missing entries {missing}")
        if manifest["format_version"] != MODEL_FORMAT_VERSION:
            raise ModelFileError(f"{manifest_path}: format version {manifest['format_version']!r}, this hybridtmd "
                                 f"reads {MODEL_FORMAT_VERSION}")
        weights_path = directory / WEIGHTS_NAME
        if not weights_path.is_file():
            raise ModelFileError(f"{weights_path}: missing (the manifest {manifest_path} refers to it)")
        if file_sha256(weights_path) != manifest["weights_sha256"]:
            raise ModelFileError(f"{weights_path}: SHA-256 differs from the one in {manifest_path}; the weights "
                                 f"were modified or belong to another model")
        try:
            params = dict(manifest["params"])
            if isinstance(params.get("class_weight"), list):
                params["class_weight"] = {k: v for k, v in params["class_weight"]}
            params["clip_percentiles"] = tuple(params.get("clip_percentiles", (1.0, 99.0)))  # JSON made it a list
            if device is not None:
                params["device"] = device
            clf = cls(**params)
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
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelFileError(f"{manifest_path}: inconsistent manifest ({type(exc).__name__}: {exc})") from exc
        clf.device_ = clf._pick_device()
        model = _network(_architecture(clf.backbone_used_),
                         _head(clf.n_features_, int(clf.hidden), len(clf.classes_), float(clf.dropout)))
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
        except Exception as exc:
            raise ModelFileError(f"{weights_path}: does not fit the architecture in {manifest_path} "
                                 f"({type(exc).__name__}: {exc})") from exc
        clf.model_ = model.to(clf.device_).eval()
        return clf

    # ---- internals --------------------------------------------------------------------------

    def _check_fit_input(self, X: Any, y: Any, groups: Any) -> tuple[list[AFMImage], np.ndarray, np.ndarray | None]:
        images = check_images(X)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(images):
            raise ValueError(f"y must be 1-D with one label per image ({len(images)}), got shape {y.shape}")
        if groups is not None:
            groups = np.asarray(groups, dtype=object)
            if len(groups) != len(images):
                raise ValueError(f"groups has {len(groups)} entries, expected {len(images)}")
        return images, y, groups

    def _validate_params(self) -> None:
        for name in ("epochs", "batch_size", "hidden"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if self.patience is not None and (not isinstance(self.patience, (int, np.integer)) or self.patience < 1):
            raise ValueError(f"patience must be a positive integer or None, not {self.patience!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, not {self.lr!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout!r}")
        if self.input_size is not None and (not isinstance(self.input_size, (int, np.integer)) or self.input_size < 16):
            raise ValueError(f"input_size must be an integer >= 16 or None, not {self.input_size!r}")
        if not (self.class_weight is None or self.class_weight == "balanced" or isinstance(self.class_weight, dict)):
            raise ValueError(f"class_weight must be 'balanced', a dict or None, not {self.class_weight!r}")
        lo, hi = (float(v) for v in self.clip_percentiles)
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"clip_percentiles must satisfy 0 <= low < high <= 100, not {self.clip_percentiles!r}")

    def _resolve_backbone(self) -> Backbone:
        try:
            return create_backbone(self.backbone, self.weights)
        except WeightsNotFoundError as exc:
            if self.weights is not None or self.fallback is None or self.fallback == self.backbone:
                raise
            key = (self.backbone, self.fallback)
            if key not in _FALLBACK_WARNED:  # once per process: CV loops fit many times
                _FALLBACK_WARNED.add(key)
                warnings.warn(f"{exc} Fine-tuning {self.fallback!r} instead of {self.backbone!r} "
                              f"(see backbone_used_; fallback=None raises instead).", BackboneFallbackWarning,
                              stacklevel=3)  # the caller of fit
            return create_backbone(self.fallback)

    def _pick_device(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but CUDA is not available; use device='cpu' or 'auto'")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', not {self.device!r}")
        return self.device

    def _seed(self) -> int:
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    def _inputs(self, images: list[AFMImage]) -> torch.Tensor:
        """(N, 3, S, S) CNN inputs, exactly as the frozen embeddings prepare them (on CPU)."""
        import torch

        mean, std = self._norm
        if not images:
            return torch.empty(0, 3, self.input_size_, self.input_size_)
        return torch.stack([to_input_tensor(normalise_height(im.height, tuple(self.clip_percentiles), flat_value=0.5),
                                            self.input_size_, mean, std) for im in images])

    def _class_weights(self, y_index: np.ndarray) -> torch.Tensor | None:
        import torch

        n = len(self.classes_)
        if self.class_weight is None:
            return None
        if self.class_weight == "balanced":
            counts = np.bincount(y_index, minlength=n).astype(np.float64)
            # classes absent from this training set get weight 1: they never appear as a target
            w = np.where(counts > 0, len(y_index) / (np.count_nonzero(counts) * np.maximum(counts, 1)), 1.0)
        else:
            w = np.array([float(self.class_weight.get(c, 1.0)) for c in self.classes_.tolist()])
        return torch.tensor(w, dtype=torch.float32, device=self.device_)

    def _train(self, images: list[AFMImage], y: np.ndarray, groups: np.ndarray | None, seed: int, stage: str) -> None:
        """One training stage of ``model_`` on (images, y): split, epochs, early stopping, records."""
        import torch

        start = time.perf_counter()
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        y_index = np.array([index[c] for c in y.tolist()], dtype=np.int64)
        train, val = grouped_validation_split(y, groups, float(self.validation_fraction), seed)
        if float(self.validation_fraction) > 0 and len(val) == 0:
            warnings.warn(f"validation_fraction={self.validation_fraction} holds out no group (too few groups per "
                          f"class): training without a validation set, so without early stopping", UserWarning,
                          stacklevel=3)
        self.validation_indices_ = val
        x = self._inputs(images)
        targets = torch.from_numpy(y_index)
        model, device, frozen = self.model_, self.device_, bool(self.frozen)
        model.features.requires_grad_(not frozen)
        params = model.head.parameters() if frozen else model.parameters()
        optimiser = torch.optim.Adam(params, lr=float(self.lr))
        loss_fn = torch.nn.CrossEntropyLoss(weight=self._class_weights(y_index[train]))
        generator = torch.Generator().manual_seed(seed)
        total_flops = self.flops_per_image_ = estimate_flops(model, self.input_size_)
        head_flops = _linear_flops(model.head) if frozen else 0
        flops = 0.0
        # frozen: backbone features per (image, dihedral view), computed on first use
        n_views = 8 if self.augment else 1
        cache = torch.zeros(len(x), n_views, self.n_features_, device=device) if frozen else None
        have = torch.zeros(len(x), n_views, dtype=torch.bool)
        n_backbone_passes = 0

        def features(idx: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
            nonlocal n_backbone_passes
            todo = ~have[idx, views]
            if todo.any():
                sel, sel_views = idx[todo], views[todo]
                # one contiguous batch: rotated views are strided and would slow the convolutions down
                batch = torch.stack([_d4(x[i], int(v)) for i, v in zip(sel, sel_views, strict=True)])
                with torch.no_grad():
                    cache[sel, sel_views] = model.features(batch.to(device)).float()
                have[sel, sel_views] = True
                n_backbone_passes += len(sel)
            return cache[idx, views]

        def logits(idx: torch.Tensor, views: torch.Tensor | None) -> torch.Tensor:
            if views is None:
                views = torch.zeros(len(idx), dtype=torch.long)
            if frozen:
                return model.head(features(idx, views))
            batch = x[idx]
            if self.augment and bool((views > 0).any()):
                batch = torch.stack([_d4(im, int(v)) for im, v in zip(batch, views, strict=True)])
            return model(batch.to(device))

        def evaluate() -> tuple[float, float]:
            nonlocal flops
            model.eval()
            loss_sum, correct, weight_sum = 0.0, 0, 0.0
            w = loss_fn.weight
            with torch.no_grad():
                for idx in _batches(torch.as_tensor(val), int(self.batch_size)):
                    out = logits(idx, None).float()
                    t = targets[idx].to(device)
                    # weighted mean over the whole validation set, as CrossEntropyLoss over one batch
                    per = torch.nn.functional.cross_entropy(out, t, weight=w, reduction="sum")
                    loss_sum += float(per)
                    weight_sum += float(w[t].sum()) if w is not None else len(t)
                    correct += int((out.argmax(1).cpu() == targets[idx]).sum())
            flops += len(val) * (head_flops if frozen else total_flops)
            return loss_sum / weight_sum, correct / len(val)

        history: list[dict[str, Any]] = []
        best_loss, best_epoch, best_state, stale = math.inf, 0, None, 0
        n_batches = len(_batches(torch.arange(len(train)), int(self.batch_size)))
        show = self.progress if self.progress is not None else sys.stderr.isatty()
        title = f"fine-tuning {self.backbone_used_}" + (" (frozen)" if frozen else "")
        with _EpochProgress(bool(show), int(self.epochs) * n_batches, title) as bar:
            for epoch in range(1, int(self.epochs) + 1):
                t0 = time.perf_counter()
                model.train()
                if frozen:
                    model.features.eval()  # fixed batch-norm statistics too
                order = torch.as_tensor(train)[torch.randperm(len(train), generator=generator)]
                views = (torch.randint(0, 8, (len(train),), generator=generator) if self.augment
                         else torch.zeros(len(train), dtype=torch.long))
                loss_sum, n_seen = 0.0, 0
                for pos in _batches(torch.arange(len(train)), int(self.batch_size)):
                    idx = order[pos]
                    optimiser.zero_grad(set_to_none=True)
                    loss = loss_fn(logits(idx, views[pos]), targets[idx].to(device))
                    loss.backward()
                    optimiser.step()
                    loss_sum += loss.detach().item() * len(idx)
                    n_seen += len(idx)
                    bar.update(1, f"epoch {epoch}/{self.epochs} loss {loss_sum / n_seen:.3f}")
                flops += TRAIN_STEP_FLOPS_FACTOR * n_seen * (head_flops if frozen else total_flops)
                val_loss, val_acc = evaluate() if len(val) else (None, None)
                entry = {"epoch": epoch, "train_loss": loss_sum / n_seen, "val_loss": val_loss,
                         "val_accuracy": val_acc, "seconds": time.perf_counter() - t0}
                history.append(entry)
                bar.update(0, f"epoch {epoch}/{self.epochs} loss {entry['train_loss']:.3f} "
                              f"val loss {_fmt(val_loss)} val acc {_fmt(val_acc)}")
                if val_loss is None:
                    best_epoch = epoch
                    continue
                if val_loss < best_loss:
                    best_loss, best_epoch, stale = val_loss, epoch, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    stale += 1
                    if self.patience is not None and stale >= int(self.patience):
                        break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        flops += n_backbone_passes * (total_flops - head_flops)
        self.history_ = history
        self.n_epochs_ = len(history)
        self.best_epoch_ = best_epoch
        self.fit_seconds_ = time.perf_counter() - start
        self.fit_flops_ = float(flops)
        self.stages_ = [*getattr(self, "stages_", []), {
            "stage": stage, "classes": self.classes_.tolist(), "n_images": len(images), "n_train": len(train),
            "n_validation": len(val), "n_epochs": self.n_epochs_, "best_epoch": best_epoch,
            "best_val_loss": None if best_state is None else best_loss, "seconds": self.fit_seconds_,
            "flops": self.fit_flops_,
        }]

    def _jsonable_params(self) -> dict[str, Any]:
        params = self.get_params()
        if params["weights"] is not None:
            params["weights"] = str(params["weights"])
        if isinstance(params["class_weight"], dict):  # JSON object keys must be strings; labels may not be
            params["class_weight"] = [[k, v] for k, v in params["class_weight"].items()]
        params["clip_percentiles"] = list(params["clip_percentiles"])
        if not (params["random_state"] is None or isinstance(params["random_state"], (int, np.integer))):
            params["random_state"] = None  # a RandomState object is not serialisable; it was consumed anyway
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}


def _linear_flops(module: nn.Module) -> int:
    """Forward FLOPs of the linear layers of ``module`` for one input (2 per multiply-add)."""
    from torch import nn

    return sum(2 * m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("hybridtmd", "torch", "torchvision", "timm"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


# --------------------------------------------------------------------------------------------
# Hybrid vs fine-tuning on identical folds
# --------------------------------------------------------------------------------------------


def compare(
    images: Sequence[AFMImage],
    y: Any,
    groups: Any,
    *,
    hybrid: Any = None,
    fine_tune: FineTuneClassifier | None = None,
    level_config: Any = None,
    cv: Any = None,
    n_repeats: int = 1,
    random_state: int = 0,
) -> Evaluation:
    """The hybrid classifier, each of its halves, and end-to-end fine-tuning, on identical folds.

    Images are levelled once (``level_config``). The hybrid's two feature halves are computed
    once for all images (each timed); ``hybrid``, ``descriptors`` and ``embeddings`` rows are the
    hybrid's head (default :class:`~hybridtmd.model.HybridClassifier`) on the full table and on
    each half; the ``fine-tune`` row is ``fine_tune`` (default :class:`FineTuneClassifier`) on
    the levelled images. Every fold of every model is the same
    (:func:`~hybridtmd.evaluation.evaluate_inputs`).

    Cost columns: ``fit_seconds``/``predict_seconds`` of the table models include their share of
    feature extraction (per-image time × images of the fold); ``fit_flops``/``predict_flops``
    count CNN forward passes (:func:`estimate_flops`): the hybrid embeds each image once, the
    fine-tuning reports its own training FLOPs. Descriptor arithmetic (filters, FFTs) is not
    counted in FLOPs; its time is in the seconds.
    """
    from sklearn.base import clone

    from .evaluation import evaluate_inputs
    from .model import HybridClassifier, resolve_features
    from .preprocess import level

    y, groups = np.asarray(y), np.asarray(groups)
    levelled = [level(im, level_config) for im in check_images(images)]
    hybrid = HybridClassifier() if hybrid is None else hybrid
    features = resolve_features("default" if hybrid.features is None else hybrid.features)
    if features.descriptors is None or features.embedder is None:
        raise ValueError("compare needs a hybrid with both halves (descriptors and embedder)")
    seconds, tables = {}, {}
    for name, off in (("descriptors", "embedder"), ("embeddings", "descriptors")):
        part = clone(features).set_params(level=False, **{off: None})
        start = time.perf_counter()
        tables[name] = part.fit_transform(levelled)
        seconds[name] = (time.perf_counter() - start) / len(levelled)
        if name == "embeddings":
            embedder = part.embedder_
            embed_flops = estimate_flops(embedder.backbone_, embedder.input_size or embedder.backbone_.input_size)
    head = clone(hybrid).set_params(features=None)
    table = pd.concat([tables["descriptors"], tables["embeddings"]], axis=1)
    inputs = {"hybrid": (head, table), "descriptors": (head, tables["descriptors"]),
              "embeddings": (head, tables["embeddings"]),
              "fine-tune": (FineTuneClassifier() if fine_tune is None else fine_tune, levelled)}
    result = evaluate_inputs(inputs, y, groups, cv=cv, n_repeats=n_repeats, random_state=random_state)
    folds = result.folds
    per_image = {"hybrid": seconds["descriptors"] + seconds["embeddings"], **seconds}
    for name, cost in per_image.items():
        rows = folds["model"] == name
        folds.loc[rows, "fit_seconds"] += cost * folds.loc[rows, "n_train"]
        folds.loc[rows, "predict_seconds"] += cost * folds.loc[rows, "n_test"]
        cnn = 0.0 if name == "descriptors" else embed_flops
        folds.loc[rows, "fit_flops"] = cnn * folds.loc[rows, "n_train"]
        folds.loc[rows, "predict_flops"] = cnn * folds.loc[rows, "n_test"]
    return result


def compute_ratios(result: Evaluation, slow: str = "fine-tune", fast: str = "hybrid") -> dict[str, float]:
    """Mean cost of ``slow`` over ``fast`` per fold: fit and predict wall time and FLOPs."""
    means = result.folds.groupby("model")[["fit_seconds", "predict_seconds", "fit_flops", "predict_flops"]].mean()
    return {col: float(means.loc[slow, col] / means.loc[fast, col]) if means.loc[fast, col] else math.inf
            for col in means.columns}


__all__ = [
    "BackboneFallbackWarning",
    "FineTuneClassifier",
    "MANIFEST_NAME",
    "MODEL_FORMAT_VERSION",
    "ModelFileError",
    "TRAIN_STEP_FLOPS_FACTOR",
    "WEIGHTS_NAME",
    "compare",
    "compute_ratios",
    "estimate_flops",
    "grouped_validation_split",
]

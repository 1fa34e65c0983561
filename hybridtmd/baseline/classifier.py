"""The :class:`FineTuneClassifier` estimator: fit, continue, predict, save and load."""

from __future__ import annotations

import numbers
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._utils.devices import DEVICES, select_device
from .._utils.params import Interval, Options, validate_params
from .._utils.progress import ProgressBar
from ..embeddings import Backbone, WeightsNotFoundError, create_backbone
from ..embeddings.backbones import pooled
from ..embeddings.inputs import CLIP_PERCENTILES, INPUT_SIZE, image_views
from ..errors import ModelFileError
from ..io import AFMImage
from ..io.image import check_images
from ..model.persistence import MANIFEST_NAME
from ..preprocess import NORMALISE_PERCENTILES
from .multilabel import ElementLoss, class_log_likelihood, element_matrix, material_elements
from .network import (
    AMP_DTYPES,
    DevicePlan,
    build_head,
    build_network,
    estimate_flops,
    feature_extractor,
    linear_flops,
    split_batches,
    torch_settings,
    widen_output,
)
from .persistence import WEIGHTS_NAME, jsonable_params, read_saved, restore_fitted, write_saved
from .training import (
    Budget,
    FrozenFeatures,
    TrainingSteps,
    class_weights,
    run_epochs,
    stage_validation_split,
)

if TYPE_CHECKING:  # torch is imported lazily, as in hybridtmd.embeddings
    import torch


_FALLBACK_WARNED: set[tuple[str, str]] = set()


class BackboneFallbackWarning(UserWarning):
    """The requested backbone's weights are absent; the fallback backbone was trained instead."""


class FineTuneClassifier(ClassifierMixin, BaseEstimator):
    """Fine-tune a pretrained CNN end to end on AFM height maps (scikit-learn classifier).

    See :mod:`hybridtmd.baseline` for the recipe, the sequential modality, cost accounting and
    the saved-model format.

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
        Stop after this many epochs without a better validation score; None: run all epochs.
    min_steps : int, optional
        Train for at least this many optimiser steps (more epochs than ``epochs`` when the
        training set gives few batches per epoch; early stopping waits for them too).
    selection : "loss" | "macro_f1"
        Validation score that picks the kept epoch and drives early stopping: the class-weighted
        loss, or macro-F1 with the loss breaking ties (as the paper).
    multilabel : bool
        One sigmoid output per chemical element of the class names, binary cross-entropy (the
        paper's sequential/low-data head, :mod:`hybridtmd.baseline.multilabel`).
    amp : "bf16" | "fp16" | None
        Mixed-precision forward passes (autocast); fp16 training scales the loss on CUDA.
    channels_last : bool
        NHWC memory layout of images and convolution weights.
    validation_fraction : float
        Fraction of each class's groups held out for early stopping, in [0, 1).
    augment : bool
        Random dihedral view (flips and 90-degree rotations) of each training image per epoch.
    class_weight : "balanced", dict or None
        Loss weight per class (``{label: weight}``); balanced: inversely proportional to counts.
    input_size : int, optional
        Square CNN input side; default the backbone's (224).
    clip_percentiles : (low, high)
        Per-image height percentiles mapped to 0 and 1; default the one normalisation of the
        descriptors and the hybrid's embedder (:data:`~hybridtmd.preprocess.NORMALISE_PERCENTILES`).
    device : "auto" | "cpu" | "cuda"
        ``auto``: CUDA when available.
    random_state : int, RandomState or None
        Seed of everything random in ``fit``; an int makes fits repeatable.
    progress : bool, optional
        Rich progress bar on stderr; default shown when stderr is a terminal.
    n_threads : int, optional
        torch CPU threads during fit/predict (default: torch's setting).
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "epochs": [Interval(numbers.Integral, 1, None)],
        "batch_size": [Interval(numbers.Integral, 1, None)],
        "hidden": [Interval(numbers.Integral, 1, None)],
        "patience": [Interval(numbers.Integral, 1, None), None],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "input_size": [INPUT_SIZE, None],
        "class_weight": [Options(("balanced",)), dict, None],
        "clip_percentiles": [CLIP_PERCENTILES],
        "device": [Options(DEVICES)],
        "min_steps": [Interval(numbers.Integral, 1, None), None],
        "selection": [Options(("loss", "macro_f1"))],
        "amp": [Options(AMP_DTYPES), None],
    }

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
        min_steps: int | None = None,
        selection: Literal["loss", "macro_f1"] = "loss",
        multilabel: bool = False,
        amp: Literal["bf16", "fp16"] | None = None,
        channels_last: bool = False,
        validation_fraction: float = 0.2,
        augment: bool = True,
        class_weight: Literal["balanced"] | dict[Any, float] | None = "balanced",
        input_size: int | None = None,
        clip_percentiles: tuple[float, float] = NORMALISE_PERCENTILES,
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
        self.min_steps = min_steps
        self.selection = selection
        self.multilabel = multilabel
        self.amp = amp
        self.channels_last = channels_last
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
        validate_params(self, self._parameter_constraints)
        for name in ("stages_", "seen_groups_"):
            self.__dict__.pop(name, None)
        backbone = self._resolve_backbone()
        self.backbone_used_ = backbone.name
        self.backbone_weights_id_ = backbone.weights_id
        self.input_size_ = int(self.input_size or backbone.input_size)
        self._norm = (backbone.mean, backbone.std)
        self.device_ = select_device(self.device)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"fit needs at least 2 classes, got {self.classes_.tolist()}")
        self.elements_ = self._elements_of(self.classes_, [])
        seed = self._seed()
        with torch_settings(self.n_threads, seed, self.device_):
            features = pooled(backbone.build())
            self.n_features_ = int(backbone.embedding_dim)
            self.model_ = self._plan().network(build_network(features, build_head(
                self.n_features_, int(self.hidden), self._n_outputs(), float(self.dropout))))
            self._train(images, y, groups, seed, stage="fit")
        return self

    def fit_continue(self, X: Sequence[AFMImage], y: Any, groups: Any = None) -> FineTuneClassifier:
        """Continue training the fitted network on new data that may contain new classes (the
        paper's sequential modality; see the module docstring). Unfitted: same as ``fit``."""
        if not hasattr(self, "model_"):
            return self.fit(X, y, groups)
        images, y, groups = self._check_fit_input(X, y, groups)
        validate_params(self, self._parameter_constraints)
        known = self.classes_.tolist()
        new = [c for c in np.unique(y).tolist() if c not in known]
        seed = self._seed()
        with torch_settings(self.n_threads, seed, self.device_):
            if new:
                merged = np.asarray(known + new)  # numpy picks a string width that fits the new labels
                self.classes_ = merged.astype(object) if self.classes_.dtype == object else merged
                self.elements_ = self._elements_of(new, self.elements_)
                self.model_.head[-1] = widen_output(self.model_.head[-1], self._n_outputs())
            self._train(images, y, groups, seed, stage="continue")
        return self

    def _elements_of(self, classes: Any, known: list[str]) -> list[str]:
        """Output elements of the multi-label head: ``known`` then new ones in order (empty for
        the softmax head)."""
        if not self.multilabel:
            return []
        found = list(dict.fromkeys([*known, *(e for c in classes for e in material_elements(c))]))
        if len(found) < 1:
            raise ValueError("multilabel=True needs class names made of element symbols, e.g. MoS2")
        return found

    def _n_outputs(self) -> int:
        return len(self.elements_) if self.multilabel else len(self.classes_)

    def _plan(self) -> DevicePlan:
        return DevicePlan(self.device_, self.amp, bool(self.channels_last))

    def _decide(self) -> Any:
        """Outputs -> class log-scores: logits (softmax head) or element-vector log-likelihoods."""
        if not self.multilabel:
            return lambda out: out
        import torch

        matrix = torch.from_numpy(element_matrix(self.classes_, self.elements_)).to(self.device_)
        return lambda out: class_log_likelihood(out.float(), matrix)

    def predict_proba(self, X: Sequence[AFMImage]) -> np.ndarray:
        """Class probabilities ``(n_images, n_classes)``, columns in ``classes_`` order: softmax of
        the logits, or (``multilabel``) the normalised likelihood of each class's element vector."""
        check_is_fitted(self, "model_")
        import torch

        images = check_images(X)
        plan, decide = self._plan(), self._decide()
        with torch_settings(self.n_threads):
            x = self._inputs(images)
            self.model_.eval()
            out = []
            with torch.inference_mode():
                for idx in split_batches(torch.arange(len(x)), int(self.batch_size)):
                    with plan.autocast():
                        logits = self.model_(plan.move(x[idx])).float()
                    out.append(torch.softmax(decide(logits), dim=1).cpu())
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

    def save(self, directory: str | Path, key: str | bytes | None = None) -> Path:
        """Write ``model.pt`` (state_dict) and ``manifest.json`` into ``directory`` as a whole
        (:mod:`.persistence`: the hybrid's model directory; ``key`` or ``$HYBRIDTMD_MODEL_KEY``
        signs it). Returns the directory."""
        check_is_fitted(self, "model_")
        import torch

        state = {k: v.detach().cpu() for k, v in self.model_.state_dict().items()}
        entries = {
            "params": jsonable_params(self.get_params()),
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
            "elements": self.elements_,
            "flops_per_image": self.flops_per_image_,
        }
        return write_saved(directory, lambda path: torch.save(state, path), entries, key)

    @classmethod
    def load(cls, directory: str | Path, *, device: Literal["auto", "cpu", "cuda"] | None = None,
             key: str | bytes | None = None) -> FineTuneClassifier:
        """A classifier saved by :meth:`save` (any format up to the current one), ready to predict
        (or to ``fit_continue``). ``device`` overrides the saved setting; ``key`` (or
        ``$HYBRIDTMD_MODEL_KEY``) for a signed model."""
        import torch

        manifest_path, weights_path = Path(directory) / MANIFEST_NAME, Path(directory) / WEIGHTS_NAME
        manifest = read_saved(directory, key)
        try:
            clf = cls._from_manifest(manifest, device)
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelFileError(f"{manifest_path}: inconsistent manifest ({type(exc).__name__}: {exc})") from exc
        clf.device_ = select_device(clf.device)
        model = build_network(feature_extractor(clf.backbone_used_),
                              build_head(clf.n_features_, int(clf.hidden), clf._n_outputs(), float(clf.dropout)))
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
        except Exception as exc:
            raise ModelFileError(f"{weights_path}: does not fit the architecture in {manifest_path} "
                                 f"({type(exc).__name__}: {exc})") from exc
        clf.model_ = model.to(clf.device_).eval()
        return clf

    @classmethod
    def _from_manifest(cls, manifest: dict[str, Any], device: str | None) -> FineTuneClassifier:
        """The classifier's parameters and fitted attributes (all but the network) from a manifest."""
        params = dict(manifest["params"])
        if isinstance(params.get("class_weight"), list):
            params["class_weight"] = {k: v for k, v in params["class_weight"]}
        params["clip_percentiles"] = tuple(params.get("clip_percentiles", (1.0, 99.0)))  # JSON made it a list
        if device is not None:
            params["device"] = device
        clf = cls(**params)
        restore_fitted(clf, manifest)
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

    def _seed(self) -> int:
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    def _inputs(self, images: list[AFMImage]) -> torch.Tensor:
        """(N, 3, S, S) CNN inputs, exactly as the frozen embeddings prepare them (on CPU)."""
        import torch

        mean, std = self._norm
        if not images:
            return torch.empty(0, 3, self.input_size_, self.input_size_)
        clip = tuple(self.clip_percentiles)
        return torch.stack([view for im in images for view in image_views(im, clip, self.input_size_, mean, std)])

    def _train(self, images: list[AFMImage], y: np.ndarray, groups: np.ndarray | None, seed: int, stage: str) -> None:
        """One training stage of ``model_`` on (images, y): split, epochs, early stopping, records.

        Kept in one piece because it wires the split, inputs, loss, optimiser, device plan and
        records of one stage in the order they depend on each other."""
        import torch

        start = time.perf_counter()
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        y_index = np.array([index[c] for c in y.tolist()], dtype=np.int64)
        train, val, self.seen_groups_ = stage_validation_split(y, groups, float(self.validation_fraction), seed,
                                                               getattr(self, "seen_groups_", {}))
        if float(self.validation_fraction) > 0 and len(val) == 0:
            warnings.warn(f"validation_fraction={self.validation_fraction} holds out no group (too few groups per "
                          f"class): training without a validation set, so without early stopping", UserWarning,
                          stacklevel=3)
        self.validation_indices_ = val
        plan = self._plan()
        x = plan.inputs(self._inputs(images))
        model, frozen = self.model_, bool(self.frozen)
        model.features.requires_grad_(not frozen)
        optimiser = torch.optim.Adam(model.head.parameters() if frozen else model.parameters(), lr=float(self.lr))
        weights = class_weights(self.class_weight, self.classes_, y_index[train], self.device_)
        if self.multilabel:
            matrix = torch.from_numpy(element_matrix(self.classes_, self.elements_)).to(self.device_)
            loss_fn: Any = ElementLoss(matrix, weights)
        else:
            loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
        decide = self._decide()
        generator = torch.Generator().manual_seed(seed)
        total_flops = self.flops_per_image_ = estimate_flops(model, self.input_size_)
        head_flops = linear_flops(model.head) if frozen else 0
        cache = (FrozenFeatures(model.features, x, 8 if self.augment else 1, self.n_features_, self.device_)
                 if frozen else None)
        targets = torch.from_numpy(y_index)
        steps = TrainingSteps(model, x, targets, targets, plan, bool(self.augment), int(self.batch_size), loss_fn,
                              lambda out: decide(out).argmax(1), cache)
        budget = Budget(int(self.epochs), None if self.min_steps is None else int(self.min_steps),
                        None if self.patience is None else int(self.patience), str(self.selection))
        n_batches = len(split_batches(torch.arange(len(train)), int(self.batch_size)))
        show = self.progress if self.progress is not None else sys.stderr.isatty()
        title = f"fine-tuning {self.backbone_used_}" + (" (frozen)" if frozen else "")
        with ProgressBar(bool(show), budget.n_epochs(n_batches) * n_batches, title) as bar:
            result = run_epochs(steps, train, val, optimiser, generator, budget=budget,
                                step_flops=head_flops if frozen else total_flops, bar=bar,
                                scaler=plan.grad_scaler())
        n_backbone_passes = 0 if cache is None else cache.n_passes
        self.history_ = result.history
        self.n_epochs_ = len(result.history)
        self.best_epoch_ = result.best_epoch
        self.fit_seconds_ = time.perf_counter() - start
        self.fit_flops_ = float(result.flops + n_backbone_passes * (total_flops - head_flops))
        self.stages_ = [*getattr(self, "stages_", []), {
            "stage": stage, "classes": self.classes_.tolist(), "n_images": len(images), "n_train": len(train),
            "n_validation": len(val), "n_steps": result.n_steps, "n_epochs": self.n_epochs_,
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_loss, "seconds": self.fit_seconds_, "flops": self.fit_flops_,
        }]

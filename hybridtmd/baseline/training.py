"""One training stage of the fine-tuned network: the epoch step, the validation step, the
frozen-feature cache, and the epoch loop with early stopping."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._utils.progress import ProgressBar
from ..embeddings.inputs import d4_view
from ..splits import grouped_validation_split
from .network import TRAIN_STEP_FLOPS_FACTOR, DevicePlan, split_batches

if TYPE_CHECKING:
    import torch
    from torch import nn


class FrozenFeatures:
    """Backbone features of each (image, dihedral view), computed on first use and reused in
    later epochs: with a frozen backbone (eval mode, no gradients) they never change."""

    def __init__(self, features: nn.Module, x: torch.Tensor, n_views: int, n_features: int, device: str):
        import torch

        self.features, self.x, self.device = features, x, device
        self.values = torch.zeros(len(x), n_views, n_features, device=device)
        self.have = torch.zeros(len(x), n_views, dtype=torch.bool)
        self.n_passes = 0  # backbone forward passes done, for the FLOP count

    def __call__(self, idx: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """Features ``(len(idx), n_features)`` of images ``idx`` in dihedral views ``views``."""
        import torch

        todo = ~self.have[idx, views]
        if todo.any():
            sel, sel_views = idx[todo], views[todo]
            # one contiguous batch: rotated views are strided and would slow the convolutions down
            batch = torch.stack([d4_view(self.x[i], int(v)) for i, v in zip(sel, sel_views, strict=True)])
            with torch.no_grad():
                self.values[sel, sel_views] = self.features(batch.to(self.device)).float()
            self.have[sel, sel_views] = True
            self.n_passes += len(sel)
        return self.values[idx, views]


@dataclass
class TrainingSteps:
    """What the epoch and validation steps of one stage share.

    ``x`` are the CNN inputs ``(N, 3, S, S)`` (on the device when ``plan`` keeps them resident,
    else on CPU, pinned for CUDA); ``targets`` what ``loss_fn`` compares outputs with (class
    indices ``(N,)``, or element indicators ``(N, E)`` for the multi-label head); ``classes`` the
    class index of every image and ``decide`` maps outputs to class indices (for accuracy and
    macro-F1). ``frozen`` holds the feature cache when only the head is trained.
    """

    model: nn.Module
    x: torch.Tensor
    targets: torch.Tensor
    classes: torch.Tensor
    plan: DevicePlan
    augment: bool
    batch_size: int
    loss_fn: Any
    decide: Any
    frozen: FrozenFeatures | None = None

    def logits(self, idx: torch.Tensor, views: torch.Tensor | None = None) -> torch.Tensor:
        """Network outputs for images ``idx`` in dihedral ``views`` (None: the images as they are)."""
        import torch

        if views is None:
            views = torch.zeros(len(idx), dtype=torch.long)
        if self.frozen is not None:
            return self.model.head(self.frozen(idx, views))
        batch = self.x[idx.to(self.x.device)]
        if self.augment and bool((views > 0).any()):
            batch = torch.stack([d4_view(im, int(v)) for im, v in zip(batch, views, strict=True)])
        with self.plan.autocast():
            return self.model(self.plan.move(batch)).float()

    def train_epoch(self, train: np.ndarray, optimiser: Any, generator: torch.Generator, bar: ProgressBar,
                    scaler: Any = None) -> tuple[float, int, int]:
        """One pass over ``train`` in a random order (one random dihedral view per image with
        ``augment``); returns the mean training loss, the images seen and the optimiser steps.
        The loss is summed on the device and read once per epoch (no host sync per step)."""
        import torch

        self.model.train()
        if self.frozen is not None:
            self.model.features.eval()  # fixed batch-norm statistics too
        order = torch.as_tensor(train)[torch.randperm(len(train), generator=generator)]
        views = (torch.randint(0, 8, (len(train),), generator=generator) if self.augment
                 else torch.zeros(len(train), dtype=torch.long))
        loss_sum = torch.zeros((), device=self.plan.device)
        n_seen = n_steps = 0
        for pos in split_batches(torch.arange(len(train)), self.batch_size):
            idx = order[pos]
            optimiser.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.logits(idx, views[pos]), self.plan.move(self.targets[idx]))
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
            else:
                loss.backward()
                optimiser.step()
            loss_sum += loss.detach() * len(idx)
            n_seen += len(idx)
            n_steps += 1
            bar.advance(1)
        return float(loss_sum) / n_seen, n_seen, n_steps

    def validate(self, val: np.ndarray) -> dict[str, float]:
        """Mean loss (class-weighted over the whole set, as the loss over one batch), accuracy and
        macro-F1 on ``val``, in eval mode."""
        import torch
        from sklearn.metrics import f1_score

        self.model.eval()
        outputs, truth = [], []
        with torch.no_grad():
            for idx in split_batches(torch.as_tensor(val), self.batch_size):
                outputs.append(self.logits(idx))
                truth.append(idx)
        out = torch.cat(outputs)
        idx = torch.cat(truth)
        loss = float(self.loss_fn(out, self.plan.move(self.targets[idx])))
        pred = self.decide(out).cpu().numpy()
        true = self.classes[idx].cpu().numpy()
        return {"val_loss": loss, "val_accuracy": float((pred == true).mean()),
                "val_macro_f1": float(f1_score(true, pred, average="macro", zero_division=0.0))}


@dataclass
class StageResult:
    """What the epoch loop of one stage produced."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_loss: float | None = None
    flops: float = 0.0
    n_steps: int = 0


@dataclass(frozen=True)
class Budget:
    """How long one stage trains: at most ``epochs`` epochs, but at least ``min_steps``
    optimiser steps (more epochs when a small training set gives few steps per epoch), early
    stopping after ``patience`` epochs without a better validation ``selection`` score."""

    epochs: int
    min_steps: int | None
    patience: int | None
    selection: str

    def n_epochs(self, steps_per_epoch: int) -> int:
        if self.min_steps is None:
            return self.epochs
        return max(self.epochs, math.ceil(self.min_steps / max(steps_per_epoch, 1)))

    def score(self, metrics: dict[str, float]) -> tuple[float, float]:
        """Larger is better: validation macro-F1 then minus loss, or minus loss alone."""
        if self.selection == "macro_f1":
            return metrics["val_macro_f1"], -metrics["val_loss"]
        return -metrics["val_loss"], 0.0


def run_epochs(steps: TrainingSteps, train: np.ndarray, val: np.ndarray, optimiser: Any,
               generator: torch.Generator, *, budget: Budget, step_flops: int, bar: ProgressBar,
               scaler: Any = None) -> StageResult:
    """Up to ``budget.n_epochs`` epochs; after each, the validation metrics (when ``val`` is not
    empty). The weights of the epoch with the best ``budget.selection`` score are restored at the
    end; training stops after ``patience`` epochs without improvement (None: never, nor before
    ``min_steps``). Without validation the last weights are kept. ``flops`` counts training steps
    and validation forwards at ``step_flops`` each."""
    result = StageResult()
    n_epochs = budget.n_epochs(len(split_batches_of(train, steps.batch_size)))
    best, best_state, stale = (-math.inf, -math.inf), None, 0
    for epoch in range(1, n_epochs + 1):
        t0 = time.perf_counter()
        train_loss, n_seen, n_steps = steps.train_epoch(train, optimiser, generator, bar, scaler)
        result.n_steps += n_steps
        result.flops += TRAIN_STEP_FLOPS_FACTOR * n_seen * step_flops
        metrics = {"val_loss": None, "val_accuracy": None, "val_macro_f1": None}
        if len(val):
            metrics = steps.validate(val)
            result.flops += len(val) * step_flops
        result.history.append({"epoch": epoch, "train_loss": train_loss, **metrics,
                               "seconds": time.perf_counter() - t0})
        bar.advance(0, f"epoch {epoch}/{n_epochs} loss {train_loss:.3f} val loss {_fmt(metrics['val_loss'])} "
                       f"val F1 {_fmt(metrics['val_macro_f1'])}")
        if metrics["val_loss"] is None:
            result.best_epoch = epoch
            continue
        score = budget.score(metrics)
        if score > best:
            best, result.best_epoch, stale = score, epoch, 0
            result.best_loss = metrics["val_loss"]
            best_state = {k: v.detach().clone() for k, v in steps.model.state_dict().items()}
        else:
            stale += 1
            enough = budget.min_steps is None or result.n_steps >= budget.min_steps
            if budget.patience is not None and stale >= budget.patience and enough:
                break
    if best_state is not None:
        steps.model.load_state_dict(best_state)
    steps.model.eval()
    return result


def split_batches_of(train: np.ndarray, batch_size: int) -> list[Any]:
    """The training batches of one epoch over ``train`` (for step counts)."""
    import torch

    return split_batches(torch.arange(len(train)), batch_size)


def stage_validation_split(y: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int,
                           seen: dict[Any, bool]) -> tuple[np.ndarray, np.ndarray, dict[Any, bool]]:
    """Train/validation positions of one stage, fixed across the stages of ``fit_continue``.

    ``seen`` maps every sample of earlier stages to whether it was a validation sample: such a
    sample keeps its side (a sample trained on never becomes a validation one, nor the other way
    round); only samples new to this stage are split afresh by
    :func:`~hybridtmd.splits.grouped_validation_split`. Returns train, validation and the updated map.
    """
    ids = np.arange(len(y)).astype(str).astype(object) if groups is None else np.asarray(groups, dtype=object)
    fresh = np.array([g not in seen for g in ids.tolist()], dtype=bool)
    is_val = np.array([seen.get(g, False) for g in ids.tolist()], dtype=bool)
    if fresh.any():
        _, sub_val = grouped_validation_split(y[fresh], ids[fresh], fraction, seed)
        is_val[np.flatnonzero(fresh)[sub_val]] = True
    updated = {**seen, **{g: bool(v) for g, v in zip(ids.tolist(), is_val.tolist(), strict=True)}}
    return np.flatnonzero(~is_val), np.flatnonzero(is_val), updated


def class_weights(class_weight: Any, classes: np.ndarray, y_index: np.ndarray, device: str) -> torch.Tensor | None:
    """Loss weight per class: None, ``{label: weight}`` (missing labels 1), or ``"balanced"``:
    ``n_train / (n_classes_present * n_class)``; a class absent from training gets 1 (it is never a target)."""
    import torch

    if class_weight is None:
        return None
    if class_weight == "balanced":
        counts = np.bincount(y_index, minlength=len(classes)).astype(np.float64)
        w = np.where(counts > 0, len(y_index) / (np.count_nonzero(counts) * np.maximum(counts, 1)), 1.0)
    else:
        w = np.array([float(class_weight.get(c, 1.0)) for c in classes.tolist()])
    return torch.tensor(w, dtype=torch.float32, device=device)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"

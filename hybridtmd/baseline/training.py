"""One training stage of the fine-tuned network: the epoch step, the validation step, the
frozen-feature cache, and the epoch loop with early stopping."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._utils import ProgressBar
from ..embeddings import d4_view
from .network import TRAIN_STEP_FLOPS_FACTOR, split_batches

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

    ``x`` are the CNN inputs ``(N, 3, S, S)`` on CPU, ``targets`` the class indices ``(N,)``;
    ``frozen`` holds the feature cache when only the head is trained.
    """

    model: nn.Module
    x: torch.Tensor
    targets: torch.Tensor
    device: str
    augment: bool
    batch_size: int
    loss_fn: Any
    frozen: FrozenFeatures | None = None

    def logits(self, idx: torch.Tensor, views: torch.Tensor | None = None) -> torch.Tensor:
        """Network outputs for images ``idx`` in dihedral ``views`` (None: the images as they are)."""
        import torch

        if views is None:
            views = torch.zeros(len(idx), dtype=torch.long)
        if self.frozen is not None:
            return self.model.head(self.frozen(idx, views))
        batch = self.x[idx]
        if self.augment and bool((views > 0).any()):
            batch = torch.stack([d4_view(im, int(v)) for im, v in zip(batch, views, strict=True)])
        return self.model(batch.to(self.device))

    def train_epoch(self, train: np.ndarray, optimiser: Any, generator: torch.Generator, bar: ProgressBar,
                    label: str) -> tuple[float, int]:
        """One pass over ``train`` in a random order (one random dihedral view per image with
        ``augment``); returns the mean training loss and the number of images seen."""
        import torch

        self.model.train()
        if self.frozen is not None:
            self.model.features.eval()  # fixed batch-norm statistics too
        order = torch.as_tensor(train)[torch.randperm(len(train), generator=generator)]
        views = (torch.randint(0, 8, (len(train),), generator=generator) if self.augment
                 else torch.zeros(len(train), dtype=torch.long))
        loss_sum, n_seen = 0.0, 0
        for pos in split_batches(torch.arange(len(train)), self.batch_size):
            idx = order[pos]
            optimiser.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.logits(idx, views[pos]), self.targets[idx].to(self.device))
            loss.backward()
            optimiser.step()
            loss_sum += loss.detach().item() * len(idx)
            n_seen += len(idx)
            bar.advance(1, f"{label} loss {loss_sum / n_seen:.3f}")
        return loss_sum / n_seen, n_seen

    def validate(self, val: np.ndarray) -> tuple[float, float]:
        """Class-weighted mean loss (weighted over the whole set, as ``CrossEntropyLoss`` over one
        batch) and accuracy on ``val``, in eval mode."""
        import torch

        self.model.eval()
        loss_sum, correct, weight_sum = 0.0, 0, 0.0
        w = self.loss_fn.weight
        with torch.no_grad():
            for idx in split_batches(torch.as_tensor(val), self.batch_size):
                out = self.logits(idx).float()
                t = self.targets[idx].to(self.device)
                per = torch.nn.functional.cross_entropy(out, t, weight=w, reduction="sum")
                loss_sum += float(per)
                weight_sum += float(w[t].sum()) if w is not None else len(t)
                correct += int((out.argmax(1).cpu() == self.targets[idx]).sum())
        return loss_sum / weight_sum, correct / len(val)


@dataclass
class StageResult:
    """What the epoch loop of one stage produced."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_loss: float | None = None
    flops: float = 0.0


def run_epochs(steps: TrainingSteps, train: np.ndarray, val: np.ndarray, optimiser: Any,
               generator: torch.Generator, *, epochs: int, patience: int | None, step_flops: int,
               bar: ProgressBar) -> StageResult:
    """Up to ``epochs`` epochs; after each, the validation loss (when ``val`` is not empty). The
    weights of the epoch with the lowest one are restored at the end; training stops after
    ``patience`` epochs without improvement (None: never). Without validation the last weights
    are kept. ``flops`` counts training steps and validation forwards at ``step_flops`` each."""
    result = StageResult()
    best_loss, best_state, stale = math.inf, None, 0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        label = f"epoch {epoch}/{epochs}"
        train_loss, n_seen = steps.train_epoch(train, optimiser, generator, bar, label)
        result.flops += TRAIN_STEP_FLOPS_FACTOR * n_seen * step_flops
        val_loss, val_acc = None, None
        if len(val):
            val_loss, val_acc = steps.validate(val)
            result.flops += len(val) * step_flops
        result.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                               "val_accuracy": val_acc, "seconds": time.perf_counter() - t0})
        bar.advance(0, f"{label} loss {train_loss:.3f} val loss {_fmt(val_loss)} val acc {_fmt(val_acc)}")
        if val_loss is None:
            result.best_epoch = epoch
            continue
        if val_loss < best_loss:
            best_loss, result.best_epoch, stale = val_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in steps.model.state_dict().items()}
        else:
            stale += 1
            if patience is not None and stale >= patience:
                break
    if best_state is not None:
        steps.model.load_state_dict(best_state)
        result.best_loss = best_loss
    steps.model.eval()
    return result


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"

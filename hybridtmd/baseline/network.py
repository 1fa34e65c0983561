"""The fine-tuned network (pooled backbone features, then a small head), its FLOP counts, its
batches and the torch settings a fit runs under."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..embeddings import Backbone, build_architecture, pooled

if TYPE_CHECKING:  # torch is imported lazily, as in hybridtmd.embeddings
    import torch
    from torch import nn

#: A training step (forward + backward + update) costs about this many forward passes.
TRAIN_STEP_FLOPS_FACTOR = 3


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
        module = feature_extractor(model_or_backbone)
    elif isinstance(model_or_backbone, Backbone):
        module = pooled(model_or_backbone.build())
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


def linear_flops(module: nn.Module) -> int:
    """Forward FLOPs of the linear layers of ``module`` for one input (2 per multiply-add)."""
    from torch import nn

    return sum(2 * m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


def feature_extractor(name: str) -> nn.Module:
    """Backbone ``name`` as a pooled feature extractor in eval mode, with *random* weights where
    the architecture is known without a weights file (:func:`hybridtmd.embeddings.build_architecture`)."""
    return pooled(build_architecture(name)).eval()


def build_head(n_features: int, hidden: int, n_classes: int, dropout: float) -> nn.Module:
    """``Linear(n_features, hidden) -> ReLU -> Dropout(dropout) -> Linear(hidden, n_classes)``."""
    from torch import nn

    return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))


def build_network(features: nn.Module, head: nn.Module) -> nn.Module:
    """``features`` then ``head``, as the submodules ``features`` and ``head`` (state-dict keys
    ``features.*`` and ``head.*``)."""
    from torch import nn

    return nn.Sequential(OrderedDict(features=features, head=head))


def split_batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """``order`` cut into batches; a final batch of one joins the previous one (batch norm cannot
    normalise a single image whose feature map is 1x1)."""
    parts = list(order.split(batch_size))
    if len(parts) > 1 and len(parts[-1]) == 1:
        parts[-2:] = [order[-(len(parts[-2]) + 1):]]
    return parts


@contextlib.contextmanager
def torch_settings(n_threads: int | None, seed: int | None = None, device: str = "cpu") -> Iterator[None]:
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

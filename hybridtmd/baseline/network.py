"""The fine-tuned network (pooled backbone features, then a small head), its FLOP counts, its
batches and the torch settings a fit runs under."""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..embeddings import Backbone
from ..embeddings.backbones import build_architecture, pooled

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


def widen_output(layer: nn.Linear, n_outputs: int) -> nn.Linear:
    """``layer`` with ``n_outputs`` rows: the known rows (weights and bias) carry over, new rows
    keep ``Linear``'s fresh initialisation (the sequential modality's new classes or elements)."""
    import torch
    from torch import nn

    if n_outputs == layer.out_features:
        return layer
    out = nn.Linear(layer.in_features, n_outputs).to(layer.weight.device)
    with torch.no_grad():
        out.weight[: layer.out_features] = layer.weight
        out.bias[: layer.out_features] = layer.bias
    return out


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


#: ``amp`` values: the autocast dtype of mixed-precision training and inference.
AMP_DTYPES = ("bf16", "fp16")
#: cuBLAS needs a fixed workspace for reproducible matrix products on CUDA (NVIDIA's cuBLAS
#: documentation, "Results reproducibility"); set for seeded fits unless the user set it.
CUBLAS_WORKSPACE = ":4096:8"


@dataclass(frozen=True)
class DevicePlan:
    """How tensors reach the device and how the network runs there.

    On CUDA the inputs of a fit are moved to the device once (``resident``) and every batch
    transfer is ``non_blocking`` from pinned memory otherwise; ``amp`` runs forward passes under
    ``torch.autocast`` (``bf16`` or ``fp16``; fp16 training also scales the loss);
    ``channels_last`` stores images and convolution weights NHWC (faster convolutions on tensor
    cores). On CPU nothing is pinned or asynchronous.
    """

    device: str
    amp: str | None = None
    channels_last: bool = False

    @property
    def is_cuda(self) -> bool:
        return self.device.split(":")[0] == "cuda"

    @property
    def resident(self) -> bool:
        """Keep a fit's inputs on the device for the whole fit (CUDA)."""
        return self.is_cuda

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The stacked inputs of a fit where they live during it: on the device (CUDA), else on
        CPU; NHWC with ``channels_last``."""
        import torch

        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x.to(self.device, non_blocking=False) if self.resident else x

    def move(self, x: torch.Tensor) -> torch.Tensor:
        """One batch to the device; asynchronous from pinned memory on CUDA."""
        if x.device.type == self.device.split(":")[0]:
            return x
        if self.is_cuda:
            return x.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device)

    def network(self, model: nn.Module) -> nn.Module:
        """``model`` on the device (NHWC weights with ``channels_last``)."""
        import torch

        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed precision for forward passes (a no-op context without ``amp``)."""
        import torch

        if self.amp is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.split(":")[0], dtype=dtype)

    def grad_scaler(self) -> Any:
        """A loss scaler for fp16 training on CUDA (bf16 and fp32 need none), else None."""
        import torch

        return torch.amp.GradScaler("cuda") if self.amp == "fp16" and self.is_cuda else None


@contextlib.contextmanager
def torch_settings(n_threads: int | None, seed: int | None = None, device: str = "cpu") -> Iterator[None]:
    """Thread count, and with ``seed`` a forked, seeded global RNG and deterministic algorithms,
    all restored on exit so a fit leaves the caller's torch state untouched. On CUDA a seeded run
    also sets ``CUBLAS_WORKSPACE_CONFIG`` (when unset; it stays set, cuBLAS reads it once)."""
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
        is_cuda = device.split(":")[0] == "cuda"
        if is_cuda:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        devices = [torch.cuda.current_device()] if is_cuda else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            # warn_only: an op without a deterministic kernel (some CUDA ones) warns instead of failing
            torch.use_deterministic_algorithms(True, warn_only=True)
            yield
    finally:
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.set_num_threads(old_threads)

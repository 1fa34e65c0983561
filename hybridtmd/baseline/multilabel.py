"""The multi-label head of the paper's sequential and low-data fine-tuning: one sigmoid output per
chemical element (Mo, W, S, Se), trained with binary cross-entropy, decided back into materials.

Moses & Reinhart trained ResNet152 with ``Linear(2048, 100) -> ReLU -> Dropout -> Linear(100, 4)
-> Sigmoid`` and ``BCELoss`` on the element vector of each material (``materials_dict`` of their
``Train/fine*class_gen.py``), and read a material off as the class whose element set equals the
thresholded outputs. Here the logits go to ``BCEWithLogitsLoss`` (the same loss, numerically
stable), and a material's probability is the likelihood of its element vector under independent
sigmoid outputs, normalised over the known materials: the paper's exact-match rule is its
maximum whenever some material matches, and it never returns "unknown".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

#: An element symbol in a material name: ``MoS2`` -> Mo, S; ``Mo-WSe2`` -> Mo, W, Se.
ELEMENT_PATTERN = re.compile(r"([A-Z][a-z]?)")


def material_elements(label: Any) -> list[str]:
    """Chemical elements named in a material label, in order of appearance (no repeats)."""
    return list(dict.fromkeys(ELEMENT_PATTERN.findall(str(label))))


def element_matrix(classes: Sequence[Any], elements: Sequence[str]) -> np.ndarray:
    """``(n_classes, n_elements)`` float32 indicator: 1 where the class contains the element."""
    return np.array([[e in material_elements(c) for e in elements] for c in classes], dtype=np.float32)


class ElementLoss:
    """Class-weighted binary cross-entropy of element logits ``(N, E)`` against the element
    vectors of class indices ``(N,)``: mean over elements per image, weighted mean over images."""

    def __init__(self, class_elements: torch.Tensor, weight: torch.Tensor | None = None):
        self.class_elements, self.weight = class_elements, weight

    def __call__(self, logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        import torch

        target = self.class_elements[classes]
        per_image = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(1)
        if self.weight is None:
            return per_image.mean()
        w = self.weight[classes]
        return (per_image * w).sum() / w.sum()


def class_log_likelihood(logits: torch.Tensor, class_elements: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` log-likelihood of each class's element vector under independent sigmoids."""
    import torch

    log_p = torch.nn.functional.logsigmoid(logits)
    log_not_p = torch.nn.functional.logsigmoid(-logits)
    return log_p @ class_elements.T + log_not_p @ (1 - class_elements).T


__all__ = ["ELEMENT_PATTERN", "ElementLoss", "class_log_likelihood", "element_matrix", "material_elements"]

"""The few-shot gate: a class learnt from a handful of images is named by the head *and* the discriminant.

A material added with 8-16 images while the others have hundreds is hardly ever predicted by
the SVM, XGBoost or stack heads, whatever the class weights: a few support vectors or leaves
cannot outline a class in 512 dimensions (issue 27: newest-class recall 0.03-0.05 at 8 images).
The discriminant head (:class:`~.discriminant.DiscriminantHead`) can - it needs only the class
mean, borrows the shape of the well-sampled classes and corrects the distance to a mean of few
images (its small-sample distance correction) - but separates the well-sampled classes less
well than the SVM (about 5 points of accuracy on the paper's embeddings).

So :class:`~hybridtmd.model.HybridClassifier` (``few_shot="discriminant"``, the default) keeps
its head for the well-sampled classes and lets the two experts decide together about the few:

* the **few-shot classes** are those with fewer than ``1 /`` :data:`~.discriminant.FEW_SHOT_RATIO` of the
  largest class's training images (none in a balanced table: then nothing changes);
* a discriminant head is fitted on the same training rows (sample weights and groups);
* for each image the product of the experts, ``log p_head(c) + log p_discriminant(c)``
  (Hinton, *Neural Comput.* 14, 2002), is formed; where its most probable class is a few-shot
  class, that class is predicted and the image's probabilities are the normalised product;
  everywhere else the head's own decision and probabilities stand.

Nothing is tuned on test data and nothing extra is chosen: the discriminant's priors follow the
class weights (equal by default: the logit adjustment for class counts of Menon et al., *ICLR*
2021) and its correction follows from its covariance and the class sizes. A discriminant head
needs no gate (it already is that expert).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFileError
from .calibration import log_probabilities
from .discriminant import DiscriminantHead, few_shot_mask
from .selection import fit_head, named_head

#: prefix of the gate's discriminant arrays in a model's arrays file
FEW_SHOT_ARRAY_PREFIX = "few_shot__"



class FewShotGate:
    """A fitted gate: the discriminant expert and which encoded classes are few-shot.

    Parameters
    ----------
    discriminant : DiscriminantHead
        Fitted on the head's training rows (encoded labels).
    few : ndarray of bool
        One entry per class: the classes the product of experts may name.
    """

    def __init__(self, discriminant: DiscriminantHead, few: np.ndarray):
        self.discriminant = discriminant
        self.few = np.asarray(few, bool)

    @classmethod
    def fit(cls, X: np.ndarray, y_enc: np.ndarray, weights: np.ndarray, groups: np.ndarray,
            feature_names: Sequence[str]) -> FewShotGate | None:
        """The gate of these training rows, or None when no class is few-shot."""
        few = few_shot_mask(np.bincount(y_enc))
        if not few.any():
            return None
        head = named_head("discriminant", feature_names, None, None)
        return cls(fit_head(head, X, y_enc, weights, groups, stacklevel=4), few)

    def apply(self, table: np.ndarray, proba: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The head's ``proba`` and encoded ``labels`` of the rows of ``table``, with the product
        of experts where it names a few-shot class."""
        from scipy.special import log_softmax, softmax

        product = log_probabilities(proba) + log_softmax(self.discriminant.decision_function(table), axis=1)
        choice = product.argmax(axis=1)
        gated = self.few[choice]
        labels, proba = np.array(labels, dtype=int), np.array(proba, dtype=float)
        labels[gated] = choice[gated]
        proba[gated] = softmax(product[gated], axis=1)
        return proba, labels

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(settings, arrays)`` for the manifest and the arrays file (prefixed
        :data:`FEW_SHOT_ARRAY_PREFIX`)."""
        settings, arrays = self.discriminant.to_state()
        return ({"discriminant": settings, "few": self.few.tolist()},
                {FEW_SHOT_ARRAY_PREFIX + k: v for k, v in arrays.items()})

    @classmethod
    def from_state(cls, settings: Mapping[str, Any] | None, arrays: Mapping[str, np.ndarray]) -> FewShotGate | None:
        """The gate :meth:`to_state` described (None for None: a model without one);
        ``KeyError``/``TypeError``/``ValueError`` on a malformed state."""
        if settings is None:
            return None
        own = {k[len(FEW_SHOT_ARRAY_PREFIX):]: v for k, v in arrays.items() if k.startswith(FEW_SHOT_ARRAY_PREFIX)}
        discriminant = DiscriminantHead.from_state(settings["discriminant"], own)
        few = np.asarray(settings["few"], bool)
        if few.shape != (len(discriminant.classes_),):
            raise ValueError(f"few has {few.size} entries for {len(discriminant.classes_)} classes")
        return cls(discriminant, few)


def fit_gate(model: Any, X: np.ndarray, y_enc: np.ndarray, weights: np.ndarray, groups: np.ndarray
             ) -> FewShotGate | None:
    """The gate of a :class:`~hybridtmd.model.HybridClassifier` whose head was just fitted on these
    rows (None with ``few_shot=None``, a discriminant head or no few-shot class); the few-shot
    classes are recorded in ``head_selection_["few_shot_classes"]`` (the model card shows them)."""
    if model.few_shot is None or isinstance(model.classifier_, DiscriminantHead):
        return None
    gate = FewShotGate.fit(X, y_enc, weights, groups, model.feature_names_)
    if gate is not None:
        model.head_selection_["few_shot_classes"] = [str(c) for c in model.classes_[gate.few]]
    return gate


def load_gate(settings: Mapping[str, Any] | None, arrays: Mapping[str, np.ndarray], path: Path) -> FewShotGate | None:
    """:meth:`FewShotGate.from_state` of a model file (None: saved without a gate, or before gates
    existed); :class:`ModelFileError` naming the arrays file ``path`` when it is malformed."""
    try:
        return FewShotGate.from_state(settings, arrays)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{path}: not a readable few-shot gate ({type(exc).__name__}: {exc})") from None

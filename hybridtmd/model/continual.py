"""Adding a material to a fitted model: :meth:`HybridClassifier.fit_continue` / :func:`add_classes`.

A lab that has trained (and saved) a model and then scans a new material should not have to refit
on every old image. With the discriminant head (:class:`~.discriminant.DiscriminantHead`) a class
is its mean in the head's standardised space; the shared covariance, learnt from the old classes,
stays. So a new class is learnt from its own images alone: their mean (and, from the sizes of its
samples, its small-sample distance correction) is computed, the class
priors are set again from ``class_weight`` (``"balanced"``: equal), and the new images join the
out-of-distribution reference (so they are no longer flagged as unknown). Nothing else changes:
the old classes keep their means, the standardisation and covariance are the old ones, and
``training_summary_`` / ``head_selection_`` record the added classes. This is the ``previous``
variant of the paper's protocol (``evaluate_low_data``) for the hybrid.

Other heads cannot add a class without their training data (an SVM's support vectors or an
XGBoost booster are fitted to all classes at once): :func:`add_classes` then says to fit with
``classifier="discriminant"`` or to refit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .discriminant import DiscriminantHead

if TYPE_CHECKING:
    from .classifier import HybridClassifier


def add_classes(model: HybridClassifier, X: Any, y: Any, groups: Any = None) -> HybridClassifier:
    """Teach the fitted ``model`` the classes of ``y`` it does not know, from their images in ``X``
    (images or a feature table, as for ``predict``), in place; rows of classes it knows are not
    used (their class stays as it was learnt). ``ValueError`` when ``y`` has no new class, when
    the head is not the discriminant, or on mismatched lengths."""
    check_is_fitted(model, "classifier_")
    head = model.classifier_
    if not isinstance(head, DiscriminantHead):
        raise ValueError(f"adding classes needs the discriminant head; this model's head is "
                         f"{model.head_selection_.get('choice', type(head).__name__)}: fit it with "
                         "classifier='discriminant', or refit on all classes")
    if getattr(model, "conformal_", None) is not None:  # its calibration holds no image of a new class
        raise ValueError("this model has conformal prediction sets, calibrated without the new class: refit it "
                         "on all classes (with conformal=...) instead of adding one")
    check_classification_targets(y)
    y = column_or_1d(y)
    table = model.transform_features(X).to_numpy()
    if len(y) != len(table):
        raise ValueError(f"y has {len(y)} labels for {len(table)} rows of X")
    groups = np.asarray([f"added:{i}" for i in range(len(y))] if groups is None else groups)
    if len(groups) != len(y):
        raise ValueError(f"groups has {len(groups)} entries for {len(y)} images")
    new = np.isin(y, model.classes_, invert=True)
    if not new.any():
        raise ValueError(f"y has no class the model does not know (classes: {', '.join(map(str, model.classes_))})")
    added = np.unique(y[new])
    classes = np.unique(np.concatenate([model.classes_, added]))
    Z = head.standardise(table[new])
    means = {label: head.means_[j] for j, label in enumerate(model.classes_.tolist())}
    means |= {label: Z[y[new] == label].mean(axis=0) for label in added.tolist()}
    counts = dict(model.training_summary_["class_counts"])
    counts |= {str(label): int((y[new] == label).sum()) for label in added.tolist()}
    # the new class's small-sample distance correction from its own samples' sizes
    noise = {label: head.mean_noise_[j] for j, label in enumerate(model.classes_.tolist())}
    noise |= {label: head.mean_noise(np.unique(groups[new][y[new] == label], return_counts=True)[1])
              for label in added.tolist()}
    head.set_class_means(np.stack([means[c] for c in classes.tolist()]),
                         class_priors(model.class_weight, classes, counts), [noise[c] for c in classes.tolist()],
                         counts=[counts[str(c)] for c in classes.tolist()])
    model.classes_ = classes
    if model.ood_ is not None:  # the new images are known now: they join the reference
        model.ood_.add_reference(table[new])
    summary = model.training_summary_
    summary["class_counts"] = {str(c): counts[str(c)] for c in classes.tolist()}
    summary["n_images"] = int(summary["n_images"] + new.sum())
    summary["n_samples"] = int(summary["n_samples"] + len(np.unique(groups[new])))
    summary["added_classes"] = [*summary.get("added_classes", []), *map(str, added.tolist())]
    model.head_selection_ = {**model.head_selection_,
                             "added_classes": [*model.head_selection_.get("added_classes", []),
                                               *map(str, added.tolist())]}
    return model


def class_priors(class_weight: Any, classes: np.ndarray, counts: dict[str, int]) -> np.ndarray:
    """The discriminant's priors for ``classes`` with ``counts`` images: each class's share of the
    sample weights ``class_weight`` gives (``"balanced"``: equal; a dict: weight × count, 1 for a
    class it does not name; None: the counts)."""
    n = np.array([counts[str(c)] for c in classes.tolist()], float)
    if class_weight == "balanced":
        return np.full(len(classes), 1.0 / len(classes))
    if isinstance(class_weight, dict):
        n = n * np.array([float(class_weight.get(c, 1.0)) for c in classes.tolist()])
    return n / n.sum()


class ClassAdding:
    """:class:`~hybridtmd.model.HybridClassifier`'s methods that add classes to a fitted model."""

    def add_classes(self, X: Any, y: Any, groups: Any = None) -> HybridClassifier:
        """Learn the classes of ``y`` this fitted model does not know from their images in ``X``,
        without refitting (:func:`add_classes`; the discriminant head only)."""
        return add_classes(self, X, y, groups)

    def can_add_classes(self) -> bool:
        """Whether :meth:`fit_continue` can add classes: the head is (or, unfitted, will be) the
        discriminant. Evaluations refit the other heads instead of continuing them."""
        if hasattr(self, "classifier_"):
            return isinstance(self.classifier_, DiscriminantHead)
        return self.classifier == "discriminant" or isinstance(self.classifier, DiscriminantHead)

    def fit_continue(self, X: Any, y: Any, groups: Any = None) -> HybridClassifier:
        """``fit`` when unfitted, else :meth:`add_classes`: the ``previous`` variant of the paper's
        low-data protocol (a model trained on classes 2 .. k-1 learns the k-th)."""
        if not hasattr(self, "classifier_"):
            return self.fit(X, y, groups=groups)
        return add_classes(self, X, y, groups)

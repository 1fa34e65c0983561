"""Evaluation on folds grouped by sample: images of one sample are never on both sides.

Every accuracy hybridtmd reports comes from here. One engine (:mod:`.cv`) runs any number of
models on *identical* folds (``StratifiedGroupKFold`` by sample, repeated with different shuffles)
and records, per fold: accuracy, balanced accuracy, macro-F1, recall of every class, the confusion
matrix, and fit/predict wall time. The paper's modalities (:mod:`.modalities`) vary the training
side only; :mod:`.compare` puts the hybrid, its halves and end-to-end fine-tuning on the same
folds. :mod:`.figures` draws results, :mod:`.report` writes the report folders of
``hybridtmd evaluate`` and ``hybridtmd compare``.
"""

from ..splits import FixedTestSplit, GroupLeakError, Split, check_grouped_split, grouped_splits, split_limit
from .compare import compare, compute_ratios
from .cv import cap_per_class, evaluate, evaluate_inputs
from .figures import plot_confusion, plot_evaluation
from .modalities import (
    ablation,
    element_targets,
    evaluate_low_data,
    evaluate_multilabel,
    evaluate_sequential,
    low_data_fit_count,
)
from .results import METRICS, MULTILABEL_METRICS, Evaluation
from .significance import paired_differences, permutation_test, permute_between_samples

__all__ = [
    "METRICS",
    "MULTILABEL_METRICS",
    "Evaluation",
    "FixedTestSplit",
    "GroupLeakError",
    "Split",
    "ablation",
    "paired_differences",
    "permutation_test",
    "permute_between_samples",
    "cap_per_class",
    "check_grouped_split",
    "compare",
    "compute_ratios",
    "element_targets",
    "evaluate",
    "evaluate_inputs",
    "evaluate_low_data",
    "low_data_fit_count",
    "evaluate_multilabel",
    "evaluate_sequential",
    "grouped_splits",
    "plot_confusion",
    "plot_evaluation",
    "split_limit",
]

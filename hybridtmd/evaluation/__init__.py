"""Evaluation on folds grouped by sample: images of one sample are never on both sides.

Every accuracy hybridtmd reports comes from here. One engine (:mod:`.cv`) runs any number of
models on *identical* folds (``StratifiedGroupKFold`` by sample, repeated with different shuffles)
and records, per fold: accuracy, balanced accuracy, macro-F1, recall of every class, the confusion
matrix, and fit/predict wall time. The paper's modalities (:mod:`.modalities`) vary the training
side only; :mod:`.compare` puts the hybrid, its halves and end-to-end fine-tuning on the same
folds. :mod:`.figures` draws results, :mod:`.report` writes the report folders of
``hybridtmd evaluate`` and ``hybridtmd compare``.
"""

from .compare import compare
from .cv import evaluate
from .figures import plot_confusion, plot_evaluation
from .modalities import ablation, evaluate_low_data, evaluate_multilabel, evaluate_sequential
from .results import METRICS, Evaluation
from .significance import paired_differences, permutation_test

__all__ = [
    "Evaluation",
    "METRICS",
    "ablation",
    "compare",
    "evaluate",
    "evaluate_low_data",
    "evaluate_multilabel",
    "evaluate_sequential",
    "paired_differences",
    "permutation_test",
    "plot_confusion",
    "plot_evaluation",
]

"""The result of an evaluation: per-fold metrics, summaries and Markdown tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

#: Per-fold metric columns summarised by :meth:`Evaluation.summary`, besides ``recall[<class>]``.
METRICS = ("accuracy", "sample_accuracy", "balanced_accuracy", "macro_f1", "newest_recall", "fit_seconds",
           "predict_seconds", "fit_flops", "predict_flops", "coverage", "mean_set_size")
MULTILABEL_METRICS = ("hamming_accuracy", "subset_accuracy", "fit_seconds", "predict_seconds")


@dataclass
class Evaluation:
    """Result of an evaluation: one row per (model, [modality setting], repeat, fold).

    Attributes
    ----------
    folds : DataFrame
        ``model, repeat, fold, n_train, n_test`` + metrics (``sample_accuracy``: the images of
        each test sample decided together, :mod:`hybridtmd.model.samples`) (+ ``cap`` /
        ``n_classes`` for the low-data / sequential modalities).
    confusion : dict
        model name → confusion matrix (DataFrame, true × predicted) summed over every fold of
        every repeat (for the last setting of a modality).
    keys : list of str
        Columns that identify a configuration (``model`` and any modality column).
    """

    folds: pd.DataFrame
    confusion: dict[str, pd.DataFrame] = field(default_factory=dict)
    keys: list[str] = field(default_factory=lambda: ["model"])

    def metric_columns(self) -> list[str]:
        return [c for c in self.folds.columns
                if c in METRICS or c in MULTILABEL_METRICS or c.startswith(("recall[", "accuracy[", "coverage["))]

    def summary(self) -> pd.DataFrame:
        """Mean and standard deviation over folds (and repeats) of every metric per configuration."""
        return self.folds.groupby(self.keys, sort=False)[self.metric_columns()].agg(["mean", "std"])

    def format(self, metrics: Sequence[str] = ("accuracy", "macro_f1")) -> str:
        """Lines ``<config>  accuracy m ± s  macro_f1 m ± s`` for printing."""
        summary = self.summary()
        labels = [" ".join(f"{v}" for v in (idx if isinstance(idx, tuple) else (idx,))) for idx in summary.index]
        width = max(map(len, labels))
        return "\n".join(
            f"  {label:<{width}}  " + "   ".join(
                f"{m} {row[(m, 'mean')]:.3f} ± {row[(m, 'std')]:.3f}" for m in metrics if (m, "mean") in row)
            for label, (_, row) in zip(labels, summary.iterrows(), strict=True))

    def to_markdown(self, metrics: Sequence[str] = ("accuracy", "balanced_accuracy", "macro_f1",
                                                    "fit_seconds")) -> str:
        """A Markdown table of ``mean ± std`` per configuration (for reports and the documentation)."""
        summary = self.summary()
        metrics = [m for m in metrics if (m, "mean") in summary.columns]
        head = "| " + " | ".join(self.keys + metrics) + " |"
        rule = "|" + "---|" * (len(self.keys) + len(metrics))
        rows = []
        for idx, row in summary.iterrows():
            idx = idx if isinstance(idx, tuple) else (idx,)
            cells = [str(v) for v in idx] + [format_mean_std(m, row[(m, "mean")], row[(m, "std")]) for m in metrics]
            rows.append("| " + " | ".join(cells) + " |")
        return "\n".join([head, rule, *rows])


def format_mean_std(metric: str, mean: float, std: float) -> str:
    """``mean ± std`` in the metric's natural unit: GFLOP for FLOPs, 2 decimals for seconds."""
    if metric.endswith("flops"):
        return f"{mean / 1e9:.1f} ± {std / 1e9:.1f} GFLOP"
    if metric.endswith("seconds"):
        return f"{mean:.2f} ± {std:.2f}"
    return f"{mean:.3f} ± {std:.3f}"


__all__ = ["METRICS", "MULTILABEL_METRICS", "Evaluation", "format_mean_std"]

"""Figures of evaluations: metric bars and confusion matrices."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .results import Evaluation


def plot_evaluation(evaluation: Evaluation, metric: str = "accuracy", ax: Any = None) -> Any:
    """Bar chart of ``metric`` (mean ± std over folds) per configuration; returns the Axes."""
    import matplotlib.pyplot as plt

    summary = evaluation.summary()[metric]
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 + 1.1 * len(summary), 3.2), layout="constrained")
    labels = [" ".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in summary.index]
    ax.bar(labels, summary["mean"], yerr=summary["std"], capsize=4, color="tab:blue", alpha=0.8)
    ax.set_ylabel(f"{metric.replace('_', ' ')} (mean ± std over folds)")
    ax.set_ylim(0, 1)
    ax.tick_params(axis="x", rotation=20)
    return ax


def plot_confusion(confusion: pd.DataFrame, ax: Any = None, title: str | None = None) -> Any:
    """Row-normalised confusion matrix (recall per true class) with counts; returns the Axes."""
    import matplotlib.pyplot as plt

    counts = confusion.to_numpy()
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 + 0.9 * len(confusion), 1.0 + 0.9 * len(confusion)), layout="constrained")
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(confusion)), [str(c) for c in confusion.columns], rotation=30)
    ax.set_yticks(range(len(confusion)), [str(c) for c in confusion.index])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, f"{n}\n{rates[i, j]:.2f}", ha="center", va="center", fontsize=8,
                color="white" if rates[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title)
    return ax


__all__ = ["plot_confusion", "plot_evaluation"]

"""Figures of evaluations: metric bars, training curves and the confusion matrix (:func:`plot_confusion`,
the one every report draws: evaluation and explanation)."""

from __future__ import annotations

from collections.abc import Sequence
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


def training_curves(folds: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, repeat, fold, epoch) from the ``history`` column of fold rows (the
    per-epoch records of the fine-tuning baseline); empty without one."""
    import json

    if "history" not in folds:
        return pd.DataFrame()
    rows = []
    for _, fold in folds.dropna(subset=["history"]).iterrows():
        kept = fold.get("kept_epoch")
        for entry in json.loads(fold["history"]):
            rows.append({"model": fold["model"], "repeat": fold["repeat"], "fold": fold["fold"], **entry,
                         "kept": bool(pd.notna(kept) and entry["epoch"] == kept)})
    return pd.DataFrame(rows)


def plot_curves(curves: pd.DataFrame) -> Any:
    """Training and validation loss (left) and validation macro-F1 (right) per epoch, one line per
    fold, the kept epoch as a dot; returns the Figure. A plateau of the validation curves is what
    convergence looks like."""
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    for i, ((model, repeat, fold), part) in enumerate(curves.groupby(["model", "repeat", "fold"], sort=False)):
        color = plt.cm.tab10(i % 10)
        label = f"{model} r{repeat} f{fold}"
        ax_loss.plot(part["epoch"], part["train_loss"], color=color, ls="--", label=f"{label} train")
        if part["val_loss"].notna().any():
            ax_loss.plot(part["epoch"], part["val_loss"], color=color, label=f"{label} validation")
            ax_f1.plot(part["epoch"], part["val_macro_f1"], color=color, label=label)
        kept = part[part["kept"]] if "kept" in part else part.iloc[:0]
        if len(kept):  # the epoch whose weights the fold kept
            ax_loss.plot(kept["epoch"], kept["val_loss"], "o", color=color, ms=6, mec="black")
            ax_f1.plot(kept["epoch"], kept["val_macro_f1"], "o", color=color, ms=6, mec="black")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss (class-weighted)")
    ax_loss.legend(fontsize=6)
    ax_f1.set_xlabel("epoch")
    ax_f1.set_ylabel("validation macro-F1")
    ax_f1.set_ylim(0, 1)
    return fig



def plot_confusion(confusion: pd.DataFrame, ax: Any = None, title: str | None = None) -> Any:
    """Confusion matrix (rows true, columns predicted: a DataFrame of counts), coloured by the
    row-normalised rate (the recall of each true class on the diagonal), each cell its count and
    rate; returns the Axes."""
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

def plot_confusion_matrix(true: Sequence[str], predicted: Sequence[str], classes: Sequence[str], title: str,
                          ax: Any = None) -> Any:
    """The confusion matrix of ``true`` and ``predicted`` labels over ``classes``, drawn by
    :func:`plot_confusion` (the evaluation report's too). Returns the Figure."""
    import pandas as pd
    from sklearn.metrics import confusion_matrix

    classes = [str(c) for c in classes]
    counts = confusion_matrix([str(t) for t in true], [str(p) for p in predicted], labels=classes)
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(1.1 * len(classes) + 2.2, 1.0 * len(classes) + 1.6))
    ax = plot_confusion(pd.DataFrame(counts, index=classes, columns=classes), ax=ax, title=title)
    ax.figure.tight_layout()
    return ax.figure


__all__ = ["plot_confusion", "plot_confusion_matrix", "plot_curves", "plot_evaluation", "training_curves"]

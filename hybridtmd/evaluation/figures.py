"""Figures of evaluations: metric bars, training curves and (:func:`hybridtmd.plotting.plot_confusion`,
the one of every report) confusion matrices."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..plotting import plot_confusion
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


__all__ = ["plot_confusion", "plot_curves", "plot_evaluation", "training_curves"]

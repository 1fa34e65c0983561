"""Report folders of ``hybridtmd evaluate`` and ``hybridtmd compare``: per-fold CSV, a Markdown
summary and a figure, each file written atomically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .._utils.files import atomic_write_csv, atomic_write_text, save_figure
from ..evaluation.compare import arm_seconds
from ..evaluation.figures import plot_confusion, plot_curves, plot_evaluation, training_curves
from ..evaluation.results import Evaluation
from ..evaluation.significance import paired_differences

#: Columns of the Markdown tables: every modality but multilabel reports class metrics.
CLASS_METRICS = ("accuracy", "sample_accuracy", "balanced_accuracy", "macro_f1", "fit_seconds")
#: ... and the modalities that add classes report the newest class's recall beside them
NEWEST_CLASS_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "newest_recall", "sample_accuracy",
                        "fit_seconds")
MULTILABEL_REPORT_METRICS = ("hamming_accuracy", "subset_accuracy", "fit_seconds")
COMPARE_METRICS = ("accuracy", "sample_accuracy", "macro_f1", "fit_seconds", "predict_seconds", "fit_flops",
                   "predict_flops")


def report_metrics(name: str) -> tuple[str, ...]:
    """The metrics a report shows for the modality ``name``."""
    if name in ("low_data", "sequential"):
        return NEWEST_CLASS_METRICS
    return MULTILABEL_REPORT_METRICS if name == "multilabel" else CLASS_METRICS


def console_metrics(name: str) -> tuple[str, ...]:
    """The fewer metrics a terminal line shows for the modality ``name``: accuracy and macro-F1,
    with balanced accuracy and the newest class's recall where classes are added."""
    if name == "multilabel":
        return MULTILABEL_REPORT_METRICS[:2]
    return NEWEST_CLASS_METRICS[:4] if name in ("low_data", "sequential") else ("accuracy", "macro_f1")


def write_evaluation_report(results: Mapping[str, Evaluation], output: str | Path, *, title: str,
                            protocol: str, main: str = "hybrid",
                            permutation: Mapping[str, float] | None = None) -> Path:
    """Write ``<name>_folds.csv`` for every result, ``evaluation.png`` (``main``'s metric bars and
    its confusion matrix over all folds), ``<name>_paired.csv`` (paired differences) and
    ``summary.md`` (``title``, the ``protocol`` sentence, one mean ± std table per result, the
    grouped permutation test's p-value when given, paired differences of the models compared on
    the same folds). Returns the summary's path."""
    import matplotlib.pyplot as plt

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", "", protocol, ""]
    for name, result in results.items():
        atomic_write_csv(result.folds, output / f"{name}_folds.csv", index=False)
        lines += [f"## {name}", "", result.to_markdown(report_metrics(name)), "", *head_lines(result.folds)]
        lines += significance_lines(result, output / f"{name}_paired.csv", report_metrics(name)[0])
    if permutation:
        lines += permutation_lines(permutation)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    plot_evaluation(results[main], ax=axes[0])
    plot_confusion(results[main].confusion[main], ax=axes[1], title=f"{main}: confusion (all folds)")
    save_figure(fig, output / "evaluation.png")
    summary = output / "summary.md"
    atomic_write_text(summary, "\n".join(lines + ["![evaluation](evaluation.png)", ""]))
    return summary


def write_comparison_report(result: Evaluation, output: str | Path, *, title: str, protocol: str,
                            ratios: Mapping[str, float], metrics: Sequence[str] = COMPARE_METRICS,
                            seconds: float | None = None) -> Path:
    """Write ``compare_folds.csv``, ``compare.png`` (accuracy and macro-F1 bars) and
    ``compare.md`` (the ``protocol`` sentence, metric and per-class recall tables, the cost
    ``ratios``, the comparison's own wall ``seconds`` when given and each arm's). Returns the
    Markdown file's path."""
    import matplotlib.pyplot as plt

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(result.folds, output / "compare_folds.csv", index=False)
    recalls = [c for c in result.folds.columns if c.startswith("recall[")]
    lines = [f"# {title}", "", protocol, "", result.to_markdown(metrics), "", "Recall per class:", "",
             result.to_markdown(recalls), "", f"Cost ratio fine-tune / hybrid: {format_ratios(ratios)}", "",
             time_line(result, seconds), "",
             *head_lines(result.folds), *backbone_lines(result.folds),
             *significance_lines(result, output / "compare_paired.csv", "accuracy")]
    curves = training_curves(result.folds)
    if not curves.empty:
        atomic_write_csv(curves, output / "curves.csv", index=False)
        save_figure(plot_curves(curves), output / "curves.png")
        kept = "; the kept epoch is a dot" if curves.get("kept", pd.Series(dtype=bool)).any() else ""
        lines += [f"Fine-tuning curves per fold (training loss, validation loss and macro-F1 per epoch{kept}):", "",
                  "![curves](curves.png)", ""]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    plot_evaluation(result, "accuracy", ax=axes[0])
    plot_evaluation(result, "macro_f1", ax=axes[1])
    save_figure(fig, output / "compare.png")
    page = output / "compare.md"
    atomic_write_text(page, "\n".join(lines + ["![comparison](compare.png)", ""]))
    return page


def time_line(result: Evaluation, seconds: float | None = None) -> str:
    """How long the comparison took (``seconds``, when given) and each arm's fit + predict seconds
    over all folds (:func:`~.compare.arm_seconds`)."""
    arms = ", ".join(f"{name} {took:.1f} s" for name, took in arm_seconds(result).items())
    whole = "" if seconds is None else f"{seconds:.1f} s wall in all; "
    return (f"Time: {whole}per arm, fit + predict summed over its folds (the table arms with their share of the "
            f"feature extraction): {arms}.")


def significance_lines(result: Evaluation, csv_path: Path, metric: str) -> list[str]:
    """Markdown of the paired differences of ``metric`` between the models of ``result`` (written
    to ``csv_path`` too); nothing with a single model."""
    if result.folds["model"].nunique() < 2:
        return []
    paired = paired_differences(result, metric)
    atomic_write_csv(paired, csv_path, index=False)
    context = [c for c in paired.columns if c not in {"model_a", "model_b", "mean_difference", "ci_low", "ci_high",
                                                      "t", "p_value", "n_folds"}]
    lines = [f"Paired differences of {metric} on the same folds (corrected resampled t-test, Nadeau & Bengio "
             "2003; 95 % interval):", "", "| " + " | ".join([*context, "a − b", "difference", "95 % interval",
                                                              "p"]) + " |", "|" + "---|" * (len(context) + 4)]
    for _, row in paired.iterrows():
        cells = [str(row[c]) for c in context] + [f"{row['model_a']} − {row['model_b']}",
                                                   f"{row['mean_difference']:+.3f}",
                                                   f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]",
                                                   f"{row['p_value']:.3g}"]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def permutation_lines(test: Mapping[str, float]) -> list[str]:
    """The grouped label-permutation test in one paragraph."""
    return [f"Grouped label-permutation test (labels permuted between samples, {int(test['n_permutations'])} "
            f"permutations, same folds): observed accuracy {test['observed']:.3f}, permuted "
            f"{test['null_mean']:.3f} ± {test['null_std']:.3f}, p = {test['p_value']:.3g} (the smallest "
            f"possible p is {1 / (1 + test['n_permutations']):.3g}).", ""]


def per_model_line(folds: Any, column: str, title: str, summarise: Any) -> list[str]:
    """``title: model: summary; ...`` of a fold-table ``column`` (rows without it left out),
    ``summarise`` turning one model's values into text; nothing when the column is absent."""
    if column not in folds:
        return []
    summary = folds.dropna(subset=[column]).groupby("model", sort=False)[column].agg(summarise)
    return [f"{title}: " + "; ".join(f"{m}: {text}" for m, text in summary.items()), ""]


def head_lines(folds: Any) -> list[str]:
    """Which head each hybrid model's inner grouped CV chose, counted over its folds (``auto``
    may choose differently per fold; a fixed head shows once)."""
    return per_model_line(folds, "head", "Head per fold (chosen inside each training fold)",
                          lambda s: ", ".join(f"{head} {n}x" for head, n in s.value_counts().items()))


def backbone_lines(folds: Any) -> list[str]:
    """Which network each row actually ran (a fine-tuning fallback shows here)."""
    return per_model_line(folds, "backbone", "Backbones actually used", lambda s: ", ".join(sorted(set(map(str, s)))))


def format_ratios(ratios: Mapping[str, float]) -> str:
    """``fit_seconds 9.6x, fit_flops 8.5x, ...``"""
    return ", ".join(f"{k} {v:.3g}x" for k, v in ratios.items())


__all__ = ["COMPARE_METRICS", "format_ratios", "report_metrics", "write_comparison_report", "write_evaluation_report"]

"""Report folders of ``hybridtmd evaluate`` and ``hybridtmd compare``: per-fold CSV, a Markdown
summary and a figure, each file written atomically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from .._utils import atomic_write_csv, atomic_write_text
from ..plotting import save_figure
from .figures import plot_confusion, plot_evaluation
from .results import Evaluation

#: Columns of the Markdown tables: every modality but multilabel reports class metrics.
CLASS_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "fit_seconds")
MULTILABEL_REPORT_METRICS = ("hamming_accuracy", "subset_accuracy", "fit_seconds")
COMPARE_METRICS = ("accuracy", "macro_f1", "fit_seconds", "predict_seconds", "fit_flops", "predict_flops")


def report_metrics(name: str) -> tuple[str, ...]:
    """The metrics a report shows for the modality ``name``."""
    return MULTILABEL_REPORT_METRICS if name == "multilabel" else CLASS_METRICS


def write_evaluation_report(results: Mapping[str, Evaluation], output: str | Path, *, title: str,
                            protocol: str, main: str = "hybrid") -> Path:
    """Write ``<name>_folds.csv`` for every result, ``evaluation.png`` (``main``'s metric bars and
    its confusion matrix over all folds) and ``summary.md`` (``title``, the ``protocol``
    sentence, one mean ± std table per result). Returns the summary's path."""
    import matplotlib.pyplot as plt

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", "", protocol, ""]
    for name, result in results.items():
        atomic_write_csv(result.folds, output / f"{name}_folds.csv", index=False)
        lines += [f"## {name}", "", result.to_markdown(report_metrics(name)), ""]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    plot_evaluation(results[main], ax=axes[0])
    plot_confusion(results[main].confusion[main], ax=axes[1], title=f"{main}: confusion (all folds)")
    save_figure(fig, output / "evaluation.png")
    summary = output / "summary.md"
    atomic_write_text(summary, "\n".join(lines + ["![evaluation](evaluation.png)", ""]))
    return summary


def write_comparison_report(result: Evaluation, output: str | Path, *, title: str, protocol: str,
                            ratios: Mapping[str, float], metrics: Sequence[str] = COMPARE_METRICS) -> Path:
    """Write ``compare_folds.csv``, ``compare.png`` (accuracy and macro-F1 bars) and
    ``compare.md`` (the ``protocol`` sentence, metric and per-class recall tables, the cost
    ``ratios``). Returns the Markdown file's path."""
    import matplotlib.pyplot as plt

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(result.folds, output / "compare_folds.csv", index=False)
    recalls = [c for c in result.folds.columns if c.startswith("recall[")]
    lines = [f"# {title}", "", protocol, "", result.to_markdown(metrics), "", "Recall per class:", "",
             result.to_markdown(recalls), "", f"Cost ratio fine-tune / hybrid: {format_ratios(ratios)}", ""]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    plot_evaluation(result, "accuracy", ax=axes[0])
    plot_evaluation(result, "macro_f1", ax=axes[1])
    save_figure(fig, output / "compare.png")
    page = output / "compare.md"
    atomic_write_text(page, "\n".join(lines + ["![comparison](compare.png)", ""]))
    return page


def format_ratios(ratios: Mapping[str, float]) -> str:
    """``fit_seconds 9.6x, fit_flops 8.5x, ...``"""
    return ", ".join(f"{k} {v:.3g}x" for k, v in ratios.items())


__all__ = ["COMPARE_METRICS", "format_ratios", "report_metrics", "write_comparison_report", "write_evaluation_report"]

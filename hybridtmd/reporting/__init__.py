"""Reports: what the explanation and evaluation stages found, written for people.

- :mod:`~hybridtmd.reporting.explanation`: the self-contained ``report.html`` of an explained set
  (:func:`write_report` on new images, :func:`write_held_out_report` on held-out folds);
- :mod:`~hybridtmd.reporting.evaluation`: the report folders of ``hybridtmd evaluate`` and
  ``hybridtmd compare`` (per-fold CSV, a Markdown summary, figures);
- :mod:`~hybridtmd.reporting.page`: the HTML pieces (embedded figures, paged tables, CSV downloads).

Figures are drawn by the stage they show (:mod:`hybridtmd.explanation.figures`,
:mod:`hybridtmd.evaluation.figures`, :mod:`hybridtmd.io.figures`); this stage arranges and writes
them, each file atomically.
"""

from __future__ import annotations

from .evaluation import write_comparison_report, write_evaluation_report
from .explanation import render_report, write_held_out_report, write_report

__all__ = ["render_report", "write_comparison_report", "write_evaluation_report", "write_held_out_report",
           "write_report"]

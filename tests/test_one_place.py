"""Each concern in one place: the confusion matrix of every report, the correlation routine, the
probability floor, the manifest name and the file digest."""

from __future__ import annotations

import numpy as np
import pandas as pd


def test_every_report_draws_the_one_confusion_matrix(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from hybridtmd.evaluation import figures
    from hybridtmd.reporting import evaluation as evaluation_report
    from hybridtmd.reporting import explanation as explanation_report

    # both reports draw through the evaluation stage's two confusion figures, not copies of them
    assert evaluation_report.plot_confusion is figures.plot_confusion
    assert explanation_report.plot_confusion_matrix is figures.plot_confusion_matrix
    drawn = []
    original = figures.plot_confusion

    def spy(confusion, ax=None, title=None):
        drawn.append(confusion)
        return original(confusion, ax=ax, title=title)

    monkeypatch.setattr(figures, "plot_confusion", spy)
    figure = figures.plot_confusion_matrix(["a", "a", "b"], ["a", "b", "b"], ["a", "b"], "t")
    assert len(drawn) == 1 and drawn[0].to_numpy().tolist() == [[1, 1], [0, 1]]
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts == ["1\n0.50", "1\n0.50", "0\n0.00", "1\n1.00"]  # counts and row rates, as evaluate draws


def test_the_correlation_table_is_the_models_correlation_routine(monkeypatch):
    import hybridtmd.explanation.stats as stats
    from hybridtmd.model import links

    rng = np.random.default_rng(0)
    x, y = pd.DataFrame(rng.normal(size=(30, 2)), columns=["a", "b"]), pd.DataFrame(rng.normal(size=(30, 3)))
    table = stats.correlation_table(x, y)
    matrices = links.correlation_matrices(x.to_numpy(), y.to_numpy())
    for name in ("n", "pearson_r", "pearson_p", "spearman_rho", "spearman_p"):
        np.testing.assert_array_equal(table[name].to_numpy(), matrices[name].ravel())
    calls = []
    monkeypatch.setattr(stats, "correlation_matrices", lambda X, Y: calls.append(1) or matrices)
    stats.correlation_table(x, y)
    assert calls == [1]


def test_one_floor_one_manifest_name_one_file_digest():
    import hybridtmd.embeddings as embeddings
    from hybridtmd.model import calibration, samples
    from hybridtmd.model.persistence import MANIFEST_NAME
    from hybridtmd.model.persistence import MANIFEST_NAME as baseline_manifest

    assert samples.PROBABILITY_FLOOR is calibration.PROBABILITY_FLOOR
    assert baseline_manifest is MANIFEST_NAME
    assert not hasattr(embeddings, "file_sha256")
    proba = np.array([[0.0, 1.0]])
    pooled = samples.pool_samples(proba, ["s"], ["a", "b"])
    assert pooled.loc["s", "label"] == "b" and np.isfinite(pooled[["p_a", "p_b"]].to_numpy()).all()

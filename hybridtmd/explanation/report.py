"""The explanation report: figures as PNG files, tables as CSV, and one self-contained HTML page."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._utils import atomic_write_csv, atomic_write_text
from ..model import LATENT_PREFIX, PHYS_PREFIX, HybridClassifier, is_image_sequence
from ..plotting import save_figure
from . import figures
from .attributions import explain, feature_frame, margins, per_class
from .groups import GroupAttribution, feature_importance, group_attributions
from .names import columns_with_prefix, display_names
from .stats import LatentLinks, latent_pca_correlation, latent_physical_links

if TYPE_CHECKING:
    from ..io import AFMImage


class _SavedFigures:
    """The report's figures in page order: each saved as a PNG in ``output`` when added."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.entries: list[tuple[str, str, Path]] = []  # (section title, caption, file)

    def add(self, fig: Any, file: str, section: str, caption: str) -> None:
        path = save_figure(fig, self.output / file, dpi=110, tight=True)  # shap's long labels overflow the axes
        self.entries.append((section, caption, path))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def _probabilities(explanation: Any, temperature: float | None) -> np.ndarray:
    """Class probabilities from the explained margins (softmax; binary: sigmoid), temperature
    scaled like :meth:`HybridClassifier.predict_proba`."""
    from scipy.special import expit, softmax

    m = margins(explanation) / (temperature or 1.0)
    if np.ndim(explanation.values) == 2:
        p = expit(m[:, 0])
        return np.column_stack([1.0 - p, p])
    return softmax(m, axis=1)


def _level_for_display(model: HybridClassifier, image: AFMImage) -> AFMImage:
    """The image as the model's features see it (levelled when the model levels)."""
    from ..preprocess import level

    features = model.features_
    return level(image, features.level_config) if features is not None and features.level_images else image


def _predictions(model: HybridClassifier, explanation: Any, names: Sequence[str],
                 labels: Sequence[str] | None) -> pd.DataFrame:
    """``image``, ``label`` (when given), ``predicted`` and ``confidence`` (calibrated probability)."""
    proba = _probabilities(explanation, model.temperature_)
    predicted = model.classes_[proba.argmax(axis=1)].astype(str)
    predictions = pd.DataFrame({"image": list(names), "predicted": predicted, "confidence": proba.max(axis=1)})
    if labels is not None:
        predictions.insert(1, "label", [str(v) for v in labels])
    return predictions


def _add_shap_figures(saved: _SavedFigures, explanation: Any, grouped: GroupAttribution) -> None:
    saved.add(figures.plot_group_attribution(grouped), "group_attribution.png", "Physical vs latent",
              "Mean Σ|SHAP| of each feature group per class; the legend gives the latent share.")
    saved.add(figures.plot_top_features(explanation), "top_features.png", "Most important features",
              "Mean |SHAP| over the explained images, stacked by class.")
    for k, cls in enumerate(per_class(explanation)[2]):
        saved.add(figures.plot_beeswarm(explanation, k), f"beeswarm_{_slug(cls)}.png", f"Per-image SHAP: {cls}",
                  "Each dot is an image; right of zero pushes towards this class; colour = feature value.")


def _add_image_figures(saved: _SavedFigures, model: HybridClassifier, explanation: Any, images: Sequence[AFMImage],
                       names: Sequence[str], max_images: int) -> None:
    for i in range(min(max_images, len(names))):
        if images:
            saved.add(figures.plot_image_explanation(_level_for_display(model, images[i]), explanation, i),
                      f"image_{i:03d}.png", f"Image {names[i]}", "The height map and the features that moved "
                      "its predicted class most (red: towards, blue: against).")
        saved.add(figures.plot_waterfall(explanation, i), f"waterfall_{i:03d}.png", f"Waterfall {names[i]}",
                  "From the base value (average margin) to this image's margin, feature by feature.")


def _add_latent_figures(saved: _SavedFigures, explanation: Any, links: LatentLinks, colours: Sequence[str],
                        colour: str) -> None:
    """The latent-driver heatmap and the paper's PCA analysis, when the table has what they need
    (physical columns, latent drivers or columns, three images or more)."""
    table = feature_frame(explanation)
    if not columns_with_prefix(table.columns, PHYS_PREFIX) or len(table) < 3:
        return
    if len(links.drivers):
        corr = links.correlations
        strongest = corr.groupby("y")["spearman_rho"].apply(lambda s: s.abs().max()).sort_values(ascending=False)
        shown = list(strongest.head(15).index)
        rho = corr.pivot(index="x", columns="y", values="spearman_rho").loc[:, shown]
        q = corr.pivot(index="x", columns="y", values="spearman_q").loc[:, shown]
        heatmap = figures.plot_correlation_heatmap(rho, q, title="Latent drivers vs physical descriptors",
                                                   label="Spearman ρ")
        saved.add(heatmap, "latent_descriptor_heatmap.png", "Latent dimensions made physical",
                  "Spearman ρ of the latent dimensions with the largest SHAP vs the descriptors they track most.")
    if columns_with_prefix(table.columns, LATENT_PREFIX):
        pca = latent_pca_correlation(table)
        heatmap = figures.plot_correlation_heatmap(pca.matrix("pearson_r"), pca.matrix("pearson_q"),
                                                   label="Pearson r", title="PCA of embeddings vs the paper's features")
        saved.add(heatmap, "pca_paper_heatmap.png", "The paper's analysis",
                  "Pearson r of the principal components of the CNN embeddings with the paper's grain density, "
                  "DoG blob count and local variation.")
        saved.add(figures.plot_pca_scatter(pca, colours), "pca_scatter.png", "Embedding space",
                  f"First two principal components of the CNN embeddings, coloured by {colour}.")


def write_report(model: HybridClassifier, X: Any, output: str | Path, *, labels: Sequence[str] | None = None,
                 names: Sequence[str] | None = None, max_images: int = 3, top_latent: int = 3,
                 title: str = "Why the model decided") -> Path:
    """Explain ``model`` on ``X`` (images or a feature table) and write a report to ``output``.

    Writes the figures as PNG files (beeswarm per class, top features, group attribution,
    waterfall and image + explanation for the first ``max_images`` images, latent-driver ↔
    descriptor heatmap, PCA ↔ paper-features heatmap and PCA scatter when the model has latent
    features), ``predictions.csv``, ``feature_importance.csv``, ``group_attribution.csv``,
    ``latent_links.csv``, and ``report.html``: one self-contained page (every PNG embedded as
    base64) that opens anywhere. ``labels`` (true classes, optional) colour the PCA scatter and
    appear beside the predictions. Returns the path of ``report.html``.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    images = list(X) if is_image_sequence(X) else []
    explanation = explain(model, X)
    n = len(explanation.values)
    names = list(names) if names is not None else ([im.name for im in images] or [str(i) for i in range(n)])
    predictions = _predictions(model, explanation, names, labels)
    importance = feature_importance(explanation)
    grouped = group_attributions(explanation, model.feature_groups_)
    links = latent_physical_links(explanation, top=top_latent)
    saved = _SavedFigures(output)
    _add_shap_figures(saved, explanation, grouped)
    _add_image_figures(saved, model, explanation, images, names, max_images)
    colours, colour = (labels, "class") if labels is not None else (predictions["predicted"], "predicted class")
    _add_latent_figures(saved, explanation, links, colours, colour)
    for frame, file in ((predictions, "predictions.csv"), (importance, "feature_importance.csv"),
                        (grouped.per_image, "group_attribution.csv"), (links.drivers, "latent_links.csv")):
        atomic_write_csv(frame, output / file, index=file == "feature_importance.csv")
    page = _html(title, model, explanation, predictions, importance, grouped, links, saved.entries)
    atomic_write_text(output / "report.html", page)
    return output / "report.html"


_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em;color:#222}"
          "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
          "img{max-width:100%;border:1px solid #eee}figure{margin:1em 0}figcaption{font-size:13px;color:#555}")


def _figure_html(section: str, caption: str, path: Path) -> str:
    """One section with the PNG at ``path`` embedded as base64 (the page needs no other file)."""
    esc = html.escape
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<h2>{esc(section)}</h2><figure><img alt='{esc(path.name)}' "
            f"src='data:image/png;base64,{encoded}'><figcaption>{esc(path.name)}: {esc(caption)}"
            "</figcaption></figure>")


def _html(title: str, model: HybridClassifier, explanation: Any, predictions: pd.DataFrame,
          importance: pd.DataFrame, grouped: GroupAttribution, links: LatentLinks,
          entries: list[tuple[str, str, Path]]) -> str:
    """The report page: summary, predictions, attribution tables, latent sentences, then every figure."""
    esc = html.escape
    n, n_features = np.shape(explanation.values)[:2]
    groups = ", ".join(f"{g} {len(c)}" for g, c in model.feature_groups_.items())
    calibration = f"temperature T = {model.temperature_:.3g}" if model.temperature_ else "none"
    top = importance.head(15).copy()
    top.index = [display_names(list(top.index))[f] for f in top.index]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>", f"<title>{esc(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>{n} image(s) explained; {n_features} features ({esc(groups)}); classes "
        f"{esc(', '.join(map(str, model.classes_)))}; calibration: {esc(calibration)}.</p>",
        "<p>SHAP values are exact TreeSHAP (Lundberg et al., 2020) of the XGBoost head, in units of its raw "
        "margin (log-odds): for every image and class, the base value plus the SHAP values of all features "
        "equals the margin. Temperature scaling divides margins by T, so the calibrated logits' SHAP values "
        "are these divided by T. Correlations are FDR-controlled (Benjamini &amp; Hochberg, 1995).</p>",
        "<h2>Predictions</h2>", predictions.round(3).to_html(index=False, border=0),
        "<h2>Share of attribution: physical vs latent</h2>", grouped.share.round(3).to_html(border=0),
        "<h2>Top features (mean |SHAP|)</h2>", top.round(4).to_html(border=0),
        "<h2>Latent dimensions in physical terms</h2><ul>",
        *[f"<li>{esc(s)}</li>" for s in links.sentences], "</ul>",
    ]
    parts += [_figure_html(section, caption, path) for section, caption, path in entries]
    parts.append("</body></html>")
    return "\n".join(parts)

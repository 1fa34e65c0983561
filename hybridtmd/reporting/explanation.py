"""The explanation report: one self-contained ``report.html`` that leads with the answer, plus
its figures (PNG) and tables (CSV) beside it.

Order of the page: what was explained and how (data set, model, protocol); the answer on the
first screen (confusion matrix, per-class recall and sample-level accuracy when labels are known,
and the share of attribution of every feature group per class); the physical story of each class
in sentences; then one collapsible card per image (height map with latent maps, group
waterfall, drill-down, nearest training examples), misclassified images first, each group by
decreasing confidence; long tables paged and downloadable as CSV; global SHAP figures last.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._utils.files import atomic_write_csv, atomic_write_text, save_figure
from .._utils.params import Interval
from ..evaluation.figures import plot_confusion_matrix
from ..explanation import cards, figures, overlays
from ..explanation.attributions import per_class
from ..explanation.explained import ExplainedSet, explain_held_out, explain_set
from ..explanation.groups import block_of, regroup
from ..explanation.stability import driver_stability, stability_sentence
from ..explanation.stats import latent_label, latent_pca_correlation
from ..explanation.story import class_stories
from ..io.image import check_channel_maps, height_images
from ..model import LATENT_PREFIX, PHYS_PREFIX, HybridClassifier
from ..model.columns import LATENT_GROUP, is_image_sequence
from ..model.conformal import DEFAULT_ALPHA, set_columns
from ..model.samples import sample_metrics
from . import page

esc = page.esc


class _Figures:
    """Figures saved as PNG in ``output`` (and closed) as they are made, with the latent columns
    each one names (read from its drawn text) and the overlay figure that maps each column."""

    def __init__(self, output: Path, dpi: int = 100) -> None:
        self.output, self.dpi = output, dpi
        self.named: dict[str, dict[str, bool]] = {}  # figure file → latent name → carries its correlate
        self.overlays: dict[str, str] = {}  # latent name → figure file with its map

    def save(self, fig: Any, file: str, dpi: int | None = None) -> Path:
        self.named[file] = overlays.latent_names_in(fig)
        return save_figure(fig, self.output / file, dpi=dpi or self.dpi, tight=True)

    def mapped(self, names: Sequence[str], path: Path) -> None:
        """Record that the figure at ``path`` overlays the maps of ``names``."""
        self.overlays.update({str(n): path.name for n in names if str(n) not in self.overlays})

    def latent_names(self) -> pd.DataFrame:
        """One row per (figure, latent name): ``figure``, ``latent``, ``carries_correlate``, ``overlay``."""
        rows = [{"figure": file, "latent": name, "carries_correlate": carries, "overlay": self.overlays.get(name, "")}
                for file, names in self.named.items() for name, carries in names.items()]
        return pd.DataFrame(rows, columns=["figure", "latent", "carries_correlate", "overlay"])


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def predictions_table(explained: ExplainedSet) -> pd.DataFrame:
    """One row per image: ``image``, ``sample``, ``label``, ``predicted``, ``confidence``,
    ``runner_up``, ``set``, ``set_size`` and ``set_note`` (the conformal prediction set, every
    class for an out-of-distribution image: :func:`~hybridtmd.model.conformal.set_columns`, as
    ``predict --alpha``), ``correct``, ``fold``, ``out_of_distribution`` and ``in_training`` (one
    of the explaining model's training rows) where known, ``p_<class>``."""
    proba = explained.proba
    order = np.argsort(-proba, axis=1, kind="stable")
    frame = pd.DataFrame({"image": explained.names})
    if explained.samples is not None:
        frame["sample"] = explained.samples
    if explained.labels is not None:
        frame["label"] = explained.labels
    frame["predicted"] = np.asarray(explained.classes)[order[:, 0]]
    frame["confidence"] = proba.max(axis=1)
    frame["runner_up"] = np.asarray(explained.classes)[order[:, 1]] if proba.shape[1] > 1 else ""
    if explained.sets is not None:
        frame = frame.join(set_columns(explained.sets, explained.classes, explained.out_of_distribution))
    if explained.labels is not None:
        frame["correct"] = frame["label"] == frame["predicted"]
    if explained.fold is not None:
        frame["fold"] = explained.fold
    if explained.out_of_distribution is not None:
        frame["out_of_distribution"] = explained.out_of_distribution
    if explained.in_training is not None and not explained.held_out:
        frame["in_training"] = explained.in_training
    for j, cls in enumerate(explained.classes):
        frame[f"p_{cls}"] = proba[:, j]
    return frame


def card_order(predictions: pd.DataFrame) -> np.ndarray:
    """Images in card order: misclassified first, then the rest, each by decreasing confidence."""
    wrong = ~predictions["correct"].to_numpy() if "correct" in predictions else np.zeros(len(predictions), bool)
    return np.lexsort((-predictions["confidence"].to_numpy(), ~wrong))


def performance(predictions: pd.DataFrame, classes: Sequence[str]) -> tuple[dict[str, float], pd.DataFrame]:
    """Image accuracy, macro recall and sample-level accuracy (:func:`~hybridtmd.model.samples.sample_metrics`,
    as ``evaluate``), and recall per class."""
    from sklearn.metrics import balanced_accuracy_score, recall_score

    true, pred = predictions["label"], predictions["predicted"]
    metrics = {"image accuracy": float((true == pred).mean()), "macro recall": balanced_accuracy_score(true, pred)}
    metrics |= sample_metrics(predictions, classes)
    recall = recall_score(true, pred, labels=list(classes), average=None, zero_division=0)
    per_class_table = pd.DataFrame({"class": list(classes), "images": [int((true == c).sum()) for c in classes],
                                    "recall": recall})
    return metrics, per_class_table


def _group_story(shares: pd.DataFrame) -> list[str]:
    """Per class: "WS2: 64% physical (grains 31%, areal 20%, ...), 36% latent"."""
    lines = []
    for cls, row in shares.iterrows():
        physical = row[[g for g in row.index if block_of(g) == "physical"]].sort_values(ascending=False)
        parts = ", ".join(f"{g} {v:.0%}" for g, v in physical.items() if v >= 0.05)
        latent = float(row.get(LATENT_GROUP, 0.0))
        detail = f" ({parts})" if parts else ""
        lines.append(f"{cls}: {physical.sum():.0%} physical{detail}, {latent:.0%} latent")
    return lines


def _card_latent_dims(explained: ExplainedSet, i: int, k: int, top: int = 3) -> tuple[list[str], str]:
    """The latent columns to map for image ``i``: its top latent drivers of output ``k`` (per-feature
    TreeSHAP), else the dimensions where it deviates most from the other images (robust z-score)."""
    latent = [c for c in explained.table.columns if str(c).startswith(LATENT_PREFIX)]
    if not latent:
        return [], ""
    if explained.features is not None:
        values, _, _ = per_class(explained.features)
        names = [str(f) for f in explained.features.feature_names]
        idx = [names.index(c) for c in latent]
        shap_values = values[i, idx, min(k, values.shape[2] - 1)]
        chosen = np.argsort(-np.abs(shap_values), kind="stable")[:top]
        return [latent[j] for j in chosen], "top latent drivers (|SHAP|)"
    block = explained.table[latent].to_numpy(dtype=np.float64)
    median = np.nanmedian(block, axis=0)
    spread = np.nanmedian(np.abs(block - median), axis=0) + 1e-12
    chosen = np.argsort(-np.abs((block[i] - median) / spread), kind="stable")[:top]
    return [latent[j] for j in chosen], "most atypical latent dimensions (robust z-score)"


def _displayed(explained: ExplainedSet, image: Any) -> Any:
    """An image as the model sees it (levelled when its features level), for thumbnails."""
    from ..preprocess import level

    features = explained.features_model
    if features is not None and getattr(features, "level_images", False):
        return level(image, getattr(features, "level_config", None))
    return image


def _card(explained: ExplainedSet, i: int, images: Sequence[Any], saved: _Figures, predictions: pd.DataFrame,
          top_latent: int = 3) -> str:
    """One collapsible card: its summary line and every figure of the image."""
    row = predictions.iloc[i]
    k = int(explained.predicted[i])
    wrong = "correct" in row and not row["correct"]
    truth = f"true {row['label']} → " if "label" in row else ""
    sample = f" · sample {row['sample']}" if "sample" in row else ""
    strange = bool(row.get("out_of_distribution", False))
    flag = (" — <b class='ood'>out of distribution</b>: unlike every training sample, do not trust its label"
            if strange else "")
    in_set = f", set {{{esc(row['set'].replace('|', ', '))}}}" if "set" in row else ""
    parts = [f"<details class='{'wrong' if wrong else 'ok'}{' ood' if strange else ''}'><summary>{esc(row['image'])}"
             f"{esc(sample)}: {esc(truth)}predicted <b>{esc(row['predicted'])}</b>{in_set} ({row['confidence']:.2f}; "
             f"runner-up {esc(str(row['runner_up']))}){' — misclassified' if wrong else ''}{flag}</summary>"]
    stem = f"card_{i:04d}"
    dims, how = _card_latent_dims(explained, i, k, top_latent)
    embedder = getattr(explained.features_model, "embedder_", None)
    if images and dims and embedder is not None:
        from ..embeddings import latent_maps

        maps = latent_maps(explained.features_model, images[i], dims)
        labels = [latent_label(n, explained.correlates) for n in maps.names]
        path = saved.save(cards.plot_latent_overlays(maps, labels), f"{stem}_latent_maps.png")
        saved.mapped(maps.names, path)
        parts.append(page.figure(path, f"Height map and where its {how} fire (each map averages to the "
                                       "dimension's embedding value)."))
    elif images:
        path = saved.save(cards.plot_height(_displayed(explained, images[i])), f"{stem}_height_map.png")
        parts.append(page.figure(path, "The height map as the model sees it (no CNN embeddings to map)."))
    path = saved.save(cards.plot_group_waterfall(explained.groups, i, k, explained.unit), f"{stem}_groups.png")
    parts.append(page.figure(path, f"From the base value to this image's output for {row['predicted']}, "
                                   f"one bar per feature group ({explained.method})."))
    if explained.features is not None:
        table = cards.drill_down(explained.features, i, k, _groups_of(explained), explained.correlates)
        path = saved.save(cards.plot_drill_down(table, f"drill-down: top features of each group, "
                                                       f"{row['predicted']}"), f"{stem}_drill_down.png")
        parts.append(page.figure(path, "The three largest features of each group and the rest of the group "
                                       "(hatched); bars of a group sum to its waterfall bar."))
    found = explained.evidence[explained.evidence["image"] == i]
    if len(found) and explained.train_images:
        shown = {j: _displayed(explained, explained.train_images[j]) for j in found["train_index"]}
        thumbs = [shown.get(j) for j in range(max(shown) + 1)]
        path = saved.save(cards.plot_nearest(found, thumbs, explained.train_labels), f"{stem}_nearest.png",
                          dpi=72)  # thumbnails of noisy height maps compress poorly: keep the page light
        parts.append(page.figure(path, f"Nearest training images of {row['predicted']} and of the runner-up, "
                                       "one per sample."))
    parts.append("</details>")
    return "".join(parts)


def _groups_of(explained: ExplainedSet) -> dict[str, list[str]]:
    from ..model.columns import feature_groups_from_columns

    return regroup(feature_groups_from_columns([str(c) for c in explained.table.columns]), explained.group_by)


def _answer(explained: ExplainedSet, predictions: pd.DataFrame, saved: _Figures, shares: pd.DataFrame) -> list[str]:
    """The first screen: headline numbers, confusion matrix and group shares side by side."""
    short, when, caveat = _protocol(explained)
    out = []
    if explained.labels is not None:
        metrics, recall = performance(predictions, explained.classes)
        headline = ", ".join(f"{name} {value:.3f}" if isinstance(value, float) else f"{value} {name}"
                             for name, value in metrics.items())
        out.append(f"<p class='lead'>Accuracy {esc(when)}: {esc(headline)}.{esc(caveat)}{_ood_line(explained)}</p>")
        confusion = saved.save(plot_confusion_matrix(predictions["label"], predictions["predicted"],
                                                             explained.classes, f"confusion matrix ({short})"),
                               "confusion_matrix.png")
        first = page.figure(confusion, f"Rows: true class, columns: predicted ({short}); the diagonal gives recall.")
    else:
        counts = predictions["predicted"].value_counts().reindex(explained.classes, fill_value=0)
        out.append(f"<p class='lead'>{len(predictions)} images, no labels: predicted "
                   f"{esc(', '.join(f'{c} {n}' for c, n in counts.items()))}.{_ood_line(explained)}</p>")
        recall, first = None, ""
    attribution = saved.save(figures.plot_group_shares(shares, f"attribution by feature group ({explained.unit})"),
                             "group_attribution.png")
    second = page.figure(attribution, "Share of each feature group in the mean |attribution| of each class's "
                                      "output; the latent block hatched.")
    out += _sets_line(explained, predictions)
    out.append(f"<div class='row'>{first}{second}</div>")
    if recall is not None:
        out.append("<h2>Per-class recall</h2>" + page.table(recall))
    return out


def _sets_line(explained: ExplainedSet, predictions: pd.DataFrame) -> list[str]:
    """What the conformal prediction sets are, their mean size and, with labels, how often they
    hold the true class here; or why there are none (too few calibration points)."""
    if explained.set_note:
        return [f"<p>No prediction sets at alpha {explained.set_alpha:g}: {esc(explained.set_note)}</p>"]
    if explained.sets is None:
        return []
    sizes = predictions["set_size"]
    line = (f"Prediction sets (conformal, alpha {explained.set_alpha:g}): each image's set holds its true class "
            f"with probability at least {1 - explained.set_alpha:g} for images of new samples; mean size "
            f"{sizes.mean():.2f} classes, a single class for {(sizes == 1).mean():.0%} of the images (a larger set: "
            "take another scan).")
    if "label" in predictions:
        held = [label in members.split("|") for label, members in zip(predictions["label"], predictions["set"],
                                                                       strict=True)]
        line += f" Here {np.mean(held):.0%} of the sets hold the label ({_protocol(explained)[0]})."
    return [f"<p>{esc(line)}</p>"]


def _protocol(explained: ExplainedSet) -> tuple[str, str, str]:
    """How the accuracy was measured: (a short name for figure titles, the headline's name, a
    caveat sentence)."""
    if explained.held_out:
        return "out-of-fold", "out-of-fold", ""
    trained = explained.in_training
    rerun = (" Held-out numbers: hybridtmd explain on the labelled dataset (the default there), or "
             "write_held_out_report.")
    if trained is None:
        return ("on these images", "on these images (in-sample if they trained the model)",
                " The model keeps no training rows to tell; in-sample numbers say nothing about new samples." + rerun)
    if trained.all():
        return ("in-sample", "in-sample (every image trained this model)",
                " These are the model's own training images: the numbers say nothing about new samples." + rerun)
    if trained.any():
        return ("partly in-sample", f"on these images, {int(trained.sum())} of {len(trained)} of them in-sample "
                "(they trained this model)", " The in-sample images flatter the numbers." + rerun)
    return "on these images", "on these images (none of them trained this model)", ""


def _ood_line(explained: ExplainedSet) -> str:
    flagged = explained.out_of_distribution
    if flagged is None or not flagged.any():
        return ""
    return (f" <b>{int(flagged.sum())} of {len(flagged)} images out of distribution</b> (unlike every training "
            "sample of the model that predicted them): their labels are not to be trusted; their cards say so.")


def _story(explained: ExplainedSet, shares: pd.DataFrame) -> list[str]:
    out = ["<h2>The physical story per class</h2><ul>", *[f"<li>{esc(s)}</li>" for s in _group_story(shares)],
           "</ul>"]
    source = explained.features if explained.features is not None else explained.descriptor_values
    if source is None:
        out.append("<p class='muted'>No per-descriptor attributions (no physical descriptors, or switched off): "
                   "no per-descriptor sentences.</p>")
        return out
    how = ("TreeSHAP" if explained.features is not None else
           "exact Shapley values of the probability with the top screened descriptors as players (the groups "
           "above: exact group Shapley values)")
    stories = class_stories(source, explained.predicted, classes=explained.classes)
    if len(stories):
        out.append(f"<p class='muted'>Monotone dependences of {esc(how)} (|Spearman ρ(value, attribution)| ≥ 0.6 "
                   "over the explained images):</p><ul>")
        out += [f"<li>{esc(s)}</li>" for s in stories["sentence"]]
        out.append("</ul>")
    else:
        out.append(f"<p class='muted'>No physical descriptor has a monotone enough dependence of its {esc(how)} "
                   "(|ρ| ≥ 0.6) to be put in one sentence.</p>")
    return out + _stability(explained)


def _stability(explained: ExplainedSet, top: int = 5) -> list[str]:
    """The explanation stability line of a held-out set (:mod:`.stability`), or why there is none."""
    if not explained.held_out:
        return []
    line = stability_sentence(driver_stability(explained, top), top)
    if not line:
        return ["<p class='muted'>Explanation stability: not measured (no per-descriptor attribution of the "
                "physical descriptors in the folds).</p>"]
    how = ("mean |TreeSHAP| per class on each fold's held-out images" if explained.features is not None else
           "each fold model's per-class screening score on its held-out images")
    return [f"<p class='stability'>{esc(line)} <span class='muted'>Ranked by {esc(how)}; "
            "explanation_stability.csv lists every driver.</span></p>"]


def render_report(explained: ExplainedSet, output: str | Path, *, images: Sequence[Any] = (),
                  title: str = "Why the model decided", max_cards: int = 24, top_latent: int = 3,
                  summary: str = "") -> Path:
    """Write ``report.html`` (self-contained), its PNG figures and CSV tables to ``output``;
    ``max_cards`` image cards, each with ``top_latent`` latent maps (whole numbers >= 0: a negative
    one would slice from the end, e.g. every latent dimension but two)."""
    for what, value in (("max_cards", max_cards), ("top_latent", top_latent)):
        if not Interval(numbers.Integral, 0, None)(value):
            raise ValueError(f"{what} must be a whole number >= 0, got {value!r}")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    saved = _Figures(output)
    predictions = predictions_table(explained)
    shares = figures.group_shares(explained.groups)
    groups = ", ".join(f"{g} {len(c)}" for g, c in _groups_of(explained).items())
    body = [f"<h1>{esc(title)}</h1>",
            f"<p>{len(predictions)} images" + (f" of {len(set(explained.samples))} samples"
                                                if explained.samples is not None else "")
            + f"; classes {esc(', '.join(explained.classes))}; features: {esc(groups)}. {esc(summary)} "
            f"Predictions {esc(explained.description)}. Attribution: {esc(_method_text(explained))}</p>"]
    body += _answer(explained, predictions, saved, shares)
    body += _story(explained, shares)
    order = card_order(predictions)
    shown = order[:max_cards]
    body.append(f"<h2>Images ({len(shown)} of {len(order)} shown: misclassified first, then by confidence)</h2>")
    body += [_card(explained, int(i), list(images), saved, predictions, top_latent) for i in shown]
    body += _tables(explained, predictions, shares, output)
    body += _global_figures(explained, saved, predictions)
    body += _exemplar_section(explained, list(images), saved)
    atomic_write_csv(saved.latent_names(), output / "latent_names.csv", index=False)
    atomic_write_text(output / "report.html", page.page(title, body))
    return output / "report.html"


def _method_text(explained: ExplainedSet) -> str:
    if explained.method == "treeshap":
        return ("exact TreeSHAP of the XGBoost margin (Lundberg et al., 2020), summed over feature groups; "
                "values plus base value equal the margin (log-odds).")
    return ("exact Shapley values of the feature groups (all 2^g coalitions) of the predicted probabilities, with "
            "an interventional background of training rows; values plus base value equal the probability.")


def _tables(explained: ExplainedSet, predictions: pd.DataFrame, shares: pd.DataFrame, output: Path) -> list[str]:
    """Predictions (paged) and the CSV files, written beside the page and embedded as downloads."""
    values, base, classes = per_class(explained.groups)
    rows = [{"image": explained.names[i], "output": classes[k], "group": g, "value": values[i, j, k],
             "base_value": base[i, k]} for i in range(len(values)) for k in range(len(classes))
            for j, g in enumerate(explained.groups.feature_names)]
    tables = {"predictions.csv": predictions, "group_attribution.csv": pd.DataFrame(rows),
              "group_shares.csv": shares.reset_index(), "latent_correlates.csv": explained.correlates,
              "nearest_examples.csv": explained.evidence}
    if explained.held_out:
        tables["explanation_stability.csv"] = driver_stability(explained)
    for file, frame in tables.items():
        atomic_write_csv(frame, output / file, index=False)
    links = " · ".join(page.csv_link(frame, file, file) for file, frame in tables.items())
    shown = predictions.drop(columns=[c for c in predictions if c.startswith("p_")])
    return ["<h2>Predictions</h2>", page.table(shown), f"<p class='muted'>Download: {links}</p>"]


def _global_figures(explained: ExplainedSet, saved: _Figures, predictions: pd.DataFrame) -> list[str]:
    """Collapsed: beeswarms per class (tree heads) and the paper's PCA analysis of the embeddings."""
    out = ["<h2>More figures</h2><details><summary>Global SHAP and the embedding space</summary>"]
    if explained.features is not None:
        import shap

        raw = explained.features
        labels = [latent_label(str(f), explained.correlates) for f in raw.feature_names]
        named = shap.Explanation(values=raw.values, base_values=raw.base_values, data=raw.data,
                                 output_names=raw.output_names, feature_names=labels)
        for k, cls in enumerate(per_class(named)[2]):
            path = saved.save(figures.plot_beeswarm(named, k), f"beeswarm_{_slug(cls)}.png")
            out.append(page.figure(path, f"Per-image SHAP for {cls}: right of zero pushes towards it."))
    table = explained.table
    if any(str(c).startswith(LATENT_PREFIX) for c in table.columns) and any(
            str(c).startswith(PHYS_PREFIX) for c in table.columns) and len(table) >= 3:
        pca = latent_pca_correlation(table)
        path = saved.save(figures.plot_correlation_heatmap(pca.matrix("pearson_r"), pca.matrix("pearson_q"),
                                                           label="Pearson r", title="PCA of embeddings vs the "
                                                           "paper's features"), "pca_paper_heatmap.png")
        out.append(page.figure(path, "Principal components of the CNN embeddings against the paper's features."))
        colours = explained.labels if explained.labels is not None else predictions["predicted"]
        path = saved.save(figures.plot_pca_scatter(pca, colours), "pca_scatter.png")
        out.append(page.figure(path, "First two principal components of the embeddings."))
    out.append("</details>")
    return out


def _exemplar_section(explained: ExplainedSet, images: Sequence[Any], saved: _Figures) -> list[str]:
    """Maps of the latent columns a figure names that no card has mapped, each on its exemplar
    image (:func:`~hybridtmd.explanation.overlays.exemplar_overlays`)."""
    named = dict.fromkeys(n for names in saved.named.values() for n in names)
    missing = [n for n in named if n not in saved.overlays and n in explained.table.columns]
    if not missing:
        return []
    out = ["<h2>Where the named latent dimensions fire</h2><details><summary>"
           f"{len(missing)} latent dimensions named by the figures above, each mapped on the image that makes it "
           "fire most</summary>"]
    if not images or getattr(explained.features_model, "embedder_", None) is None:
        out.append("<p class='muted'>No images or no CNN embedder to map them with (a feature table was "
                   "explained).</p></details>")
        return out
    made = overlays.exemplar_overlays(explained.features_model, images, explained.names, explained.table, missing,
                                      explained.correlates, saved.save)
    for path, name, dims in made:
        saved.mapped(dims, path)
        out.append(page.figure(path, f"{', '.join(dims)} on {name}, the explained image where "
                                     f"{'they are' if len(dims) > 1 else 'it is'} largest."))
    out.append("</details>")
    return out


def write_report(model: HybridClassifier, X: Any, output: str | Path, *, labels: Sequence[str] | None = None,
                 names: Sequence[str] | None = None, samples: Sequence[Any] | None = None, max_images: int = 24,
                 top_latent: int = 3, title: str = "Why the model decided", group_by: str = "auto",
                 alpha: float = DEFAULT_ALPHA, **train: Any) -> Path:
    """Explain the fitted ``model`` on ``X`` (images or a feature table) and write the report to
    ``output``; returns the path of ``report.html``. ``labels`` (and ``samples``) add the
    confusion matrix and recall on these images; ``train_images``, ``train_labels`` and
    ``train_samples`` (the model's training images in fit order) add the nearest examples.
    Cards are drawn for ``max_images`` images, each with the maps of its ``top_latent`` latent
    drivers. ``group_by``: how columns are grouped (:func:`~hybridtmd.explanation.groups.regroup`;
    for a multichannel model ``"channel"`` or ``"family"``; default the model's groups); ``alpha``: the
    error rate of the prediction sets shown beside each label (a model fitted with ``conformal``)."""
    explained = explain_set(model, X, labels=labels, names=names, samples=samples, group_by=group_by, alpha=alpha,
                            **train)
    images = height_images(check_channel_maps(X)) if is_image_sequence(X) else []  # the maps the cards show
    return render_report(explained, output, images=images, title=title, max_cards=max_images, top_latent=top_latent)


def write_held_out_report(model: HybridClassifier, images: Sequence[Any] | None, labels: Sequence[Any],
                          groups: Sequence[Any], output: str | Path, *, n_splits: int = 5, max_cards: int = 24,
                          title: str = "Why the model decides: held-out images", random_state: int = 0,
                          table: pd.DataFrame | None = None, group_by: str = "auto", top_latent: int = 3,
                          names: Sequence[str] | None = None, summary: str = "", alpha: float = DEFAULT_ALPHA) -> Path:
    """Out-of-fold predictions and explanations (:func:`explain_held_out`; ``table``: the
    images' feature table when computed already, or the rows a model without features explains,
    ``images`` None, ``names`` naming them; ``group_by``: how columns are grouped; ``alpha``: the
    error rate of the fold models' prediction sets, models with ``conformal``) of ``images`` as a
    report in ``output``; returns the path of ``report.html``."""
    explained = explain_held_out(model, images, labels, groups, n_splits=n_splits, random_state=random_state,
                                 table=table, group_by=group_by, names=names, alpha=alpha)
    return render_report(explained, output, images=explained.train_images, title=title, max_cards=max_cards,
                         top_latent=top_latent, summary=summary)

"""Commands that measure: evaluate (grouped cross-validation) and compare (hybrid vs fine-tuning)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .._utils.progress import ProgressBar
from ..errors import HybridTMDError
from .common import (
    CacheDirOption,
    ChannelOption,
    ChannelsOption,
    ConfigOption,
    FoldsOption,
    LabelledDataset,
    LowDataOption,
    NJobsOption,
    PatternOption,
    PixelSizeOption,
    QuietOption,
    RepeatsOption,
    ReportFolder,
    ZScaleOption,
    ZUnitOption,
    check_finite,
    command,
    labelled_images,
    model_from_config,
    read_options,
    use_file_backend,
)
from .messages import console, exit_for, fail, report_errors
from .outputs import check_output_dir
from .scaling import StoreOption, store_table

FixedTestOption = Annotated[bool, typer.Option(
    "--fixed-test", help="The paper's protocol for data sets with a test split (files named ..._test or a "
    "manifest split column): test always on those images, train on --folds - 1 of --folds grouped folds of the "
    "rest.")]


def outer_folds(dataset: Any, folds: int, fixed_test: bool) -> tuple[Any, str]:
    """The outer splitter of ``evaluate``/``compare`` and the sentence naming it: shuffled
    ``StratifiedGroupKFold(folds)`` by sample, or with ``fixed_test`` the paper's
    :class:`~hybridtmd.splits.FixedTestSplit` on the data set's ``test`` images."""
    from sklearn.model_selection import StratifiedGroupKFold

    from ..splits import FixedTestSplit

    if not fixed_test:
        return StratifiedGroupKFold(folds, shuffle=True), f"StratifiedGroupKFold({folds}) by sample"
    splits = dataset.splits if dataset.splits is not None else [None] * len(dataset)
    n_test = sum(str(s).lower() == "test" for s in splits)
    if n_test == 0:
        fail("--fixed-test needs images whose split is test (files named ..._test, or a manifest split column); "
             "this data set has none", code=2)
    return FixedTestSplit(splits, folds), (f"fixed test split ({n_test} test images, the paper's protocol); "
                                           f"training on {folds - 1} of {folds} StratifiedGroupKFold folds by "
                                           "sample of the rest, one model per left-out fold")




def _cross_validate(model: Any, table: Any, labels: Any, groups: Any, *, ablation: bool, low_data: list[int] | None,
                    sequential: bool, multilabel: bool, common: dict[str, Any], n_jobs: int, bar: Any
                    ) -> dict[str, Any]:
    """Every requested evaluation of ``model`` on one feature table, on the same folds; each is a
    stage of ``bar`` counting its fits."""
    from .. import evaluation
    from ..model import LATENT_PREFIX, PHYS_PREFIX
    from ..splits import grouped_splits

    hybrid = ({"hybrid": model}, table, labels, groups)
    n_splits = len(grouped_splits(labels, groups, common["cv"], n_repeats=common["n_repeats"],
                                             random_state=common["random_state"]))
    halves = sum(any(str(c).startswith(p) for c in table.columns) for p in (PHYS_PREFIX, LATENT_PREFIX))
    arms = 1 + (halves if ablation and halves > 1 else int(ablation))
    bar.stage("cross-validation" + (" (ablation: 3 arms)" if arms == 3 else ""), arms * n_splits)
    results = {"hybrid": (evaluation.ablation(model, table, labels, groups, n_jobs=n_jobs, **common) if ablation
                          else evaluation.evaluate(*hybrid, n_jobs=n_jobs, **common))}
    if low_data:
        bar.stage("low-data (the paper's protocol)",
                  evaluation.modalities.low_data_fit_count(hybrid[0], labels, n_splits, caps=low_data))
        results["low_data"] = evaluation.evaluate_low_data(*hybrid, caps=low_data, **common)
    if sequential:
        bar.stage("sequential", n_splits * (len(set(labels.tolist())) - 1))
        results["sequential"] = evaluation.evaluate_sequential(*hybrid, **common)
    if multilabel:
        bar.stage("multilabel", None)  # an element present in every training image needs no fit
        results["multilabel"] = evaluation.evaluate_multilabel(*hybrid, **common)
    return results


def _permutation_test(model: Any, table: Any, labels: Any, groups: Any, observed: Any, *, permutations: int,
                      n_jobs: int, common: dict[str, Any], bar: Any) -> dict[str, float]:
    """The grouped permutation test of the hybrid, reusing its real-label folds ``observed``."""
    from .. import evaluation

    bar.stage(f"permutation test ({permutations} permutations)", permutations * len(observed))
    return evaluation.permutation_test(model, table, labels, groups, n_permutations=permutations,
                                       observed=observed, n_jobs=n_jobs, **common)


@command("evaluate")
def evaluate_command(
    source: LabelledDataset,
    output: ReportFolder = Path("report"),
    config: ConfigOption = None,
    folds: FoldsOption = 5,
    repeats: RepeatsOption = 1,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Seed of the fold shuffling.")] = 0,
    ablation: Annotated[bool, typer.Option(help="Also descriptors-only and embeddings-only, same folds.")] = True,
    low_data: LowDataOption = None,
    sequential: Annotated[bool, typer.Option(help="Also the sequential modality (classes added one by one).")] = False,
    multilabel: Annotated[bool, typer.Option(help="Also the multilabel modality (elements Mo, W, S, Se).")] = False,
    permutations: Annotated[int, typer.Option(min=0, help="Grouped label permutations (labels swapped between "
                                              "samples) for the hybrid's p-value, 19 for p down to 0.05; each is a "
                                              "whole cross-validation of the hybrid (its head chosen anew), so the "
                                              "default is none.")] = 0,
    fixed_test: FixedTestOption = False,
    n_jobs: NJobsOption = -1,
    quiet: QuietOption = False,
    cache_dir: CacheDirOption = None,
    pattern: PatternOption = None,
    channel: ChannelOption = None,
    pixel_size_nm: PixelSizeOption = None,
    z_unit: ZUnitOption = None,
    z_scale: ZScaleOption = None,
    channels: ChannelsOption = None,
    store: StoreOption = None,
) -> None:
    """Grouped cross-validation report of the hybrid classifier: per-fold CSV, summary Markdown
    (image- and sample-level accuracy, paired differences; with --permutations N the grouped
    permutation p-value), confusion matrix and ablation figure (folds never share a sample).
    --channels: the descriptors of those channels of every file. --store DIR: the rows of a
    feature store (extract --store) for SOURCE's files, no image read."""
    use_file_backend()
    from sklearn.base import clone

    from .._utils.progress import counting_fits
    from ..io.files import needed_channels
    from ..reporting.evaluation import console_metrics, write_evaluation_report

    check_output_dir(output)  # found now, not after the cross-validation
    model = model_from_config(config, cache_dir, channels)
    read = read_options(channel, pixel_size_nm, z_unit, z_scale)
    if not model.features.is_per_image():  # a table of all images would let the PCA see the test folds
        fail("evaluate needs per-image features (no [embeddings] pca_components): a PCA fitted on every image "
             "would see the test folds; remove pca_components to evaluate", code=2)
    if store is not None:
        dataset, table, labels, groups, errors = _store_rows(store, source, pattern, read, folds)
    else:
        dataset, images, labels, groups, _, errors = labelled_images(source, pattern, read, n_folds=folds,
                                                                     channels=needed_channels(model.features))
        features = clone(model.features)
        if quiet:  # their own bars (descriptors, embedding) too
            features.set_params(**{f"{half}__progress": False for half in ("descriptors", "embedder")
                                   if getattr(features, half) is not None})
        with contextlib.nullcontext() if quiet else console.status(f"computing features of {len(images)} images..."):
            table = features.fit_transform(images)
    cv, folds_sentence = outer_folds(dataset, folds, fixed_test)
    common = {"cv": cv, "n_repeats": repeats, "random_state": seed}
    model.set_params(features=None)  # the table holds the features: every fold, arm and permutation reuses it
    permutation = None
    with ProgressBar(not quiet, None, "evaluate") as bar, counting_fits(bar.advance):
        try:
            results = _cross_validate(model, table, labels, groups, ablation=ablation, low_data=low_data,
                                      sequential=sequential, multilabel=multilabel, common=common, n_jobs=n_jobs,
                                      bar=bar)
            if permutations:
                folds = results["hybrid"].folds
                permutation = _permutation_test(model, table, labels, groups, folds[folds["model"] == "hybrid"],
                                                permutations=permutations, n_jobs=n_jobs, common=common, bar=bar)
        except (HybridTMDError, ValueError) as exc:
            fail(str(exc), code=1)
    protocol = (f"{len(table)} images, {len(set(groups.tolist()))} samples; {folds_sentence} "
                f"x {repeats} repeat(s), seed {seed}; mean ± std over folds; sample_accuracy: the images of "
                f"each test sample decided together (mean log-probability)."
                + ("" if permutations else " No permutation test (the default, for speed): `--permutations 19` adds "
                   "the grouped label-permutation p-value, 19 more cross-validations of the hybrid."))
    try:
        write_evaluation_report(results, output, title=f"Grouped cross-validation: {source}", protocol=protocol,
                                permutation=permutation)
    except OSError as exc:  # e.g. a read-only file system, which the permission check cannot see
        fail(f"{output}: cannot write the report ({exc})", code=1)
    for name, result in results.items():
        console.print(f"[bold]{name}[/]")
        console.print(result.format(console_metrics(name)), highlight=False)
    if model.conformal is not None:
        _print_coverage(results["hybrid"])
    console.print(f"report written to {output} (summary.md, evaluation.png, *_folds.csv)")
    report_errors(errors)
    exit_for(errors)


def _store_rows(store: Path, source: Path, pattern: str | None, read: dict[str, Any], folds: int) -> tuple:
    """``evaluate --store``: (dataset of the rows, table, labels, groups, bad files) from the store."""
    from .common import read_dataset

    dataset = read_dataset(source, pattern, read)
    try:
        dataset.check_folds(folds)
    except ValueError as exc:
        fail(str(exc))
    data = store_table(store, dataset)
    return dataset.subset(data.indices), data.table, data.labels, data.groups, data.errors


def _print_coverage(result: Any) -> None:
    """Empirical coverage of the conformal sets (overall, per class) and their mean size, per model."""
    from ..evaluation.coverage import COVERAGE_ALPHA

    console.print(f"[bold]conformal sets at alpha {COVERAGE_ALPHA:g}[/] (target coverage {1 - COVERAGE_ALPHA:g}; "
                  "NaN: too few calibration images in a fold)")
    per_class = [c for c in result.folds.columns if c.startswith("coverage[")]
    console.print(result.format(("coverage", *per_class, "mean_set_size")), highlight=False, soft_wrap=True)


@command("compare")
def compare_command(
    source: LabelledDataset,
    output: ReportFolder = Path("compare"),
    config: ConfigOption = None,
    folds: FoldsOption = 5,
    max_folds: Annotated[int | None, typer.Option(min=1, help="Run only the first N folds (quick runs).")] = None,
    repeats: RepeatsOption = 1,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Seed of folds and of the fine-tuning.")] = 0,
    epochs: Annotated[int, typer.Option(min=1, help="Fine-tuning epochs (paper: 60); more when --min-steps "
                                        "needs them, fewer with early stopping.")] = 60,
    min_steps: Annotated[int, typer.Option(min=1, help="Fine-tuning optimiser steps at least (more epochs "
                                           "when a small training set gives few batches).")] = 200,
    lr: Annotated[float, typer.Option(min=1e-12, callback=check_finite, help="Fine-tuning Adam learning rate "
                                      "(the paper: 7.5e-5 on GPU for 60 epochs).")] = 1e-3,
    batch_size: Annotated[int, typer.Option(min=1, help="Fine-tuning batch size.")] = 32,
    patience: Annotated[int, typer.Option(min=1, help="Early-stopping patience in epochs.")] = 10,
    selection: Annotated[str, typer.Option(help="Kept epoch by validation 'macro_f1' (the paper) or "
                                           "'loss'.")] = "macro_f1",
    backbone: Annotated[str, typer.Option(help="Fine-tuned backbone (falls back to efficientnet_lite0 "
                                          "when its weights are absent).")] = "resnet18",
    input_size: Annotated[int | None, typer.Option(min=16, help="Fine-tuning input side (default: "
                                                  "backbone's).")] = None,
    frozen: Annotated[bool, typer.Option(help="Train only the fine-tuning head on frozen backbone features (a "
                                         "linear-probe reference; not the paper's transfer comparison, which was an "
                                         "MLP on pre-extracted features).")] = False,
    fixed_test: FixedTestOption = False,
    quiet: QuietOption = False,
    pattern: PatternOption = None,
    channel: ChannelOption = None,
    pixel_size_nm: PixelSizeOption = None,
    z_unit: ZUnitOption = None,
    z_scale: ZScaleOption = None,
) -> None:
    """Hybrid vs descriptors-only vs embeddings-only vs end-to-end fine-tuning, identical folds:
    accuracy, macro-F1, per-class recall, wall time and FLOPs, and the fine-tune/hybrid cost ratio;
    the comparison's own time and each arm's."""
    use_file_backend()
    from .._utils.progress import counting_fits
    from ..baseline import FineTuneClassifier
    from ..embeddings import list_backbones
    from ..evaluation import compare
    from ..evaluation.compare import compute_ratios
    from ..reporting.evaluation import format_ratios, time_line, write_comparison_report
    from ..splits import grouped_splits, split_limit

    check_output_dir(output)  # found now, not after the comparison
    model = model_from_config(config)
    read = read_options(channel, pixel_size_nm, z_unit, z_scale)
    dataset, images, labels, groups, _, errors = labelled_images(source, pattern, read, n_folds=folds)
    outer, folds_sentence = outer_folds(dataset, folds, fixed_test)
    trained = backbone if backbone in list_backbones(available_only=True) else (
        f"efficientnet_lite0 ({backbone} weights absent, see `hybridtmd embed --help`)")
    if selection not in ("macro_f1", "loss"):
        fail(f"--selection must be macro_f1 or loss, not {selection!r}")
    fine_tune = FineTuneClassifier(backbone, epochs=epochs, min_steps=min_steps, lr=lr, batch_size=batch_size,
                                   patience=patience, selection=selection, input_size=input_size, frozen=frozen,
                                   random_state=seed, progress=False)
    cv = split_limit(outer, max_folds)
    n_splits = len(grouped_splits(labels, groups, cv, n_repeats=repeats, random_state=seed))
    start = time.perf_counter()
    with ProgressBar(not quiet, 4 * n_splits, f"comparing 4 arms on {len(images)} images ({epochs} fine-tuning "
                     "epochs; the features first)") as bar, counting_fits(bar.advance):
        try:
            result = compare(images, labels, groups, hybrid=model, fine_tune=fine_tune,
                             level_config=model.features.level_config, cv=cv, n_repeats=repeats, random_state=seed)
        except (HybridTMDError, ValueError) as exc:
            fail(str(exc), code=1)
    seconds = time.perf_counter() - start
    ratios = compute_ratios(result)
    n_folds = result.folds.groupby("model").size().iloc[0]
    protocol = (f"{len(images)} images, {len(set(groups.tolist()))} samples; {folds_sentence}, "
                f"{n_folds} fold(s) run, seed {seed}; fine-tuning: Adam lr {lr:g}, batch {batch_size}, "
                f"{epochs} epoch(s) max, >= {min_steps} steps, patience {patience}, kept epoch by validation "
                f"{selection}, "
                f"backbone {trained}; both arms at input side {input_size or 'the backbone default'}"
                f"{' (frozen)' if frozen else ''}. Mean ± std over folds.")
    try:
        write_comparison_report(result, output, title=f"Hybrid vs fine-tuning: {source}", protocol=protocol,
                                ratios=ratios, seconds=seconds)
    except OSError as exc:
        fail(f"{output}: cannot write the report ({exc})", code=1)
    console.print(result.format(("accuracy", "macro_f1", "fit_seconds")), highlight=False)
    console.print(f"cost ratio fine-tune / hybrid: {format_ratios(ratios)}", highlight=False)
    console.print(time_line(result, seconds), highlight=False)
    console.print(f"report written to {output} (compare.md, compare.png, compare_folds.csv)")
    report_errors(errors)
    exit_for(errors)

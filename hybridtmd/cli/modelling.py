"""Commands on models: train, predict, explain."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from .._utils.files import path_text
from .._utils.progress import ProgressBar, counting_fits
from ..errors import HybridTMDError
from .common import (
    CacheDirOption,
    ChannelOption,
    ChannelsOption,
    ConfigOption,
    LabelledDataset,
    ModelDirArgument,
    NJobsOption,
    PatternOption,
    PixelSizeOption,
    QuietOption,
    ReportFolder,
    ZScaleOption,
    ZUnitOption,
    command,
    expand_inputs,
    input_manifest,
    labelled_images,
    model_from_config,
    read_dataset,
    read_options,
    use_file_backend,
)
from .messages import console, exit_for, fail, report_errors, warn_line
from .outputs import check_output_dir, check_output_file, write_table
from .scaling import (
    AddressOption,
    PartitionSizeOption,
    PredictionStoreOption,
    SchedulerOption,
    StoreOption,
    predict_into_store,
    store_model,
)


@command("train")
def train_command(
    source: LabelledDataset,
    output: Annotated[Path, typer.Option("-o", "--output", help="Model directory to write.")] = Path("model"),
    config: ConfigOption = None,
    cache_dir: CacheDirOption = None,
    pattern: PatternOption = None,
    channel: ChannelOption = None,
    pixel_size_nm: PixelSizeOption = None,
    z_unit: ZUnitOption = None,
    z_scale: ZScaleOption = None,
    channels: ChannelsOption = None,
    store: StoreOption = None,
) -> None:
    """Fit the hybrid classifier (descriptors + embeddings -> XGBoost) and save it (no pickle).
    With --channels (or channels in the config's descriptors table) the model describes those
    channels of every file, and predict reads them again. With --store DIR (made by extract
    --store --embeddings) the model is fitted on the store's rows of SOURCE's files, no image
    read: the same model as without it; its features are the store's (a --config or --channels
    that disagree with them is an error naming the field)."""
    from ..io.files import needed_channels
    from ..model.persistence import check_model_target

    check_output_dir(output)
    try:  # found now, not after the fit
        check_model_target(output)
    except HybridTMDError as exc:
        fail(str(exc))
    model = model_from_config(config, cache_dir, channels)
    read = read_options(channel, pixel_size_nm, z_unit, z_scale)
    if store is not None:
        with console.status(f"fitting on the rows of the feature store {store}..."):
            model, data = store_model(store, model, read_dataset(source, pattern, read),
                                      check=config is not None or channels is not None)
        errors = data.errors
    else:
        _, images, labels, groups, _, errors = labelled_images(source, pattern, read,
                                                               channels=needed_channels(model.features))
        with console.status(f"computing features of {len(images)} images and fitting..."):
            try:
                model.fit(images, labels, groups=groups)
            except (HybridTMDError, ValueError) as exc:
                fail(str(exc), code=1)
    try:
        model.save(output)
    except (HybridTMDError, OSError) as exc:  # e.g. the disk filled up: the previous model is intact
        fail(f"{output}: cannot save the model ({exc})", code=1)
    summary = model.training_summary_
    groups_text = ", ".join(f"{g} {len(c)}" for g, c in model.feature_groups_.items())
    console.print(f"trained on {summary['n_images']} images of {summary['n_samples']} samples, "
                  f"{model.n_features_in_} features ({groups_text}); classes {summary['class_counts']}; "
                  f"saved to {output}", soft_wrap=True, highlight=False)
    console.print(head_sentence(model.head_selection_), soft_wrap=True, highlight=False)
    report_errors(errors)
    exit_for(errors)


def head_sentence(selection: dict[str, Any]) -> str:
    """Which head a fit used and why (``head_selection_``): with an inner grouped CV, each
    candidate's mean inner accuracy ± std, e.g. "head svm (auto: mean inner accuracy over 2 folds
    grouped by sample: svm 0.750 ± 0.050, xgboost 0.625 ± 0.125)"; else the recorded reason."""
    means = selection.get("mean") or {}
    if not means:
        return f"head {selection['choice']} ({selection.get('reason', 'given as classifier')})"
    scores = ", ".join(f"{name} {mean:.3f} ± {selection['std'][name]:.3f}"
                       for name, mean in sorted(means.items(), key=lambda item: -item[1]))
    return (f"head {selection['choice']} (auto: mean inner accuracy over {selection['inner_folds']} folds "
            f"grouped by {selection.get('grouped_by', 'sample')}: {scores})")


def load_classifier(model_dir: Path) -> Any:
    """A saved HybridClassifier, or a one-line error naming the directory."""
    from ..model import HybridClassifier
    from ..model.persistence import KEY_VARIABLE, unsigned_and_foreign

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = HybridClassifier.load(model_dir)
    except HybridTMDError as exc:
        fail(str(exc))
    for warning in caught:  # e.g. a model saved for CUDA on a machine without it
        warn_line(f"{model_dir}: {warning.message}")
    if unsigned_and_foreign(model_dir):
        warn_line(f"{model_dir}: an unsigned model not saved under this account (made elsewhere, copied or edited): "
                  f"its digest catches accidents, not tampering; only models signed with {KEY_VARIABLE} are "
                  "tamper-evident")
    return model


@command("predict")
def predict_command(
    model_dir: ModelDirArgument,
    inputs: Annotated[list[Path], typer.Argument(help="AFM files, or one dataset folder/manifest.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="CSV or .parquet to write.")] = Path(
        "predictions.csv"),
    channel: ChannelOption = None,
    pixel_size_nm: PixelSizeOption = None,
    z_unit: ZUnitOption = None,
    z_scale: ZScaleOption = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Embedding cache folder for this run (a model never "
                                                   "names one).")] = None,
    by_sample: Annotated[bool, typer.Option(help="Also one verdict per sample (images pooled by mean "
                                            "log-probability) into <output>_samples.csv. Samples: a manifest's "
                                            "group column; without a manifest the file name's sample field "
                                            "(<x>_<MATERIAL>_<x>_<SAMPLE>_...), else each file is its own "
                                            "sample.")] = False,
    alpha: Annotated[float | None, typer.Option(help="Also each image's (and with --by-sample each sample's) "
                                                "conformal prediction set, holding the true class with "
                                                "probability 1 - alpha: columns set and set_size (a model "
                                                "trained with [model] conformal).")] = None,
    store: PredictionStoreOption = None,
    scheduler: SchedulerOption = None,
    address: AddressOption = None,
    partition_size: PartitionSizeOption = None,
    n_jobs: NJobsOption = -1,
) -> None:
    """Predict the material of AFM files: label, confidence, probability per class, OOD flag.

    A folder gives every readable file in it, whatever its name. Files that cannot be read or
    processed are reported and skipped; the others are predicted. An image flagged
    out_of_distribution is unlike every training sample: do not trust its label. With
    --by-sample the images of one sample are also decided together. A multichannel model reads
    the channels it was trained on from each file (--channel picks the height channel); a file
    lacking one is reported and skipped.

    With --store DIR, a folder of any size: the files in partitions (--partition-size) on a dask
    cluster (a LocalCluster of --n-jobs processes, or --address), each partition's predictions
    written to DIR/pred-NNNNNN.parquet as it finishes (bad files in its .errors.json); memory
    does not grow with the number of files, and the same command after a crash predicts only the
    partitions not yet written. An input that is a feature store (extract --store --embeddings)
    is predicted from its rows, partition by partition, no image read.
    """
    import pandas as pd

    from ..model.predicting import predict_files, prediction_set_columns

    if store is not None:
        predict_into_store(model_dir, list(inputs), store, by_sample=by_sample, alpha=alpha,
                           scheduler=scheduler, address=address, partition_size=partition_size, n_jobs=n_jobs,
                           read=read_options(channel, pixel_size_nm, z_unit, z_scale))
        return
    if scheduler is not None or address is not None or partition_size is not None:
        fail("--scheduler, --address and --partition-size need --store")
    check_output_file(output, inputs=list(inputs))
    model = load_classifier(model_dir)
    if model.features_ is None:
        fail(f"{model_dir}: this model was trained on a feature table; predict from images needs an image model")
    if cache_dir is not None and model.features_.embedder_ is not None:
        model.features_.embedder_.set_params(cache_dir=cache_dir)
    calibration = _usable_calibration(model, model_dir, alpha, by_sample)
    paths = expand_inputs(inputs)
    # in passes of a few files (memory does not grow with the folder); a bad file loses only itself
    with ProgressBar(len(paths) >= 20, len(paths), "predicting") as bar:
        table, errors = predict_files(model, paths, progress=bar.advance,
                                      **read_options(channel, pixel_size_nm, z_unit, z_scale))
    if not table.empty:
        if calibration is not None:
            table = pd.concat([table, prediction_set_columns(model, table, alpha)], axis=1)
        write_table(table, output)
        n_ood = int(table["out_of_distribution"].sum()) if "out_of_distribution" in table else 0
        console.print(f"predicted {len(table)} of {len(paths)} file(s) into {output}"
                      + (f"; {n_ood} flagged out of distribution" if n_ood else ""), soft_wrap=True)
        if by_sample:
            _write_sample_verdicts(table, model.classes_, output.with_name(f"{output.stem}_samples.csv"),
                                   input_manifest(inputs), calibration, alpha)
    report_errors(errors)
    if table.empty:
        fail("no file could be predicted", code=1)
    exit_for(errors)


#: how ``--by-sample`` found each file's sample, printed with the verdicts
MANIFEST_SAMPLES = "samples from the manifest's group column"
NAME_SAMPLES = ("samples from file names (<x>_<MATERIAL>_<x>_<SAMPLE>_...: the SAMPLE field; a file not named so "
                "is its own sample)")


def _usable_calibration(model: Any, model_dir: Path, alpha: float | None, by_sample: bool) -> Any:
    """The model's conformal calibration when ``--alpha`` is given (None otherwise), checked
    before any file is read: a model without one, or an alpha it cannot serve, is one error."""
    if alpha is None:
        return None
    if model.conformal_ is None:
        fail(f"{model_dir}: trained without conformal prediction sets; --alpha needs a model trained with "
             f"[model] conformal = \"marginal\" or \"class\"")
    try:
        model.conformal_.check_usable(alpha, model.classes_, samples=by_sample)
    except ValueError as exc:
        fail(f"{model_dir}: {exc}")
    return model.conformal_


def _write_sample_verdicts(table: Any, classes: Any, path: Path, manifest: Any = None, calibration: Any = None,
                           alpha: float | None = None) -> None:
    """Pool the image probabilities of ``table`` per sample and write one row per sample; the
    samples are the ``manifest`` dataset's groups when given, else each file's by its name
    (:func:`hybridtmd.io.dataset.sample_of_file`).
    With ``calibration``, each sample's conformal set (a sample with an out-of-distribution image
    gets every class)."""
    import pandas as pd

    from .._utils.files import atomic_write_csv
    from ..io.dataset import sample_of_file
    from ..model.conformal import set_columns
    from ..model.samples import pool_samples

    if manifest is not None:
        group_of = {path_text(p): str(g) for p, g in zip(manifest.paths, manifest.groups, strict=True)}
        groups, rule = [group_of[f] for f in table["file"]], MANIFEST_SAMPLES
    else:
        groups, rule = [sample_of_file(f) for f in table["file"]], NAME_SAMPLES
    verdicts = pool_samples(table[[f"p_{c}" for c in classes]].to_numpy(), groups, classes)
    files = table.groupby(groups, sort=False)["file"].agg(";".join)
    verdicts.insert(4, "files", files.loc[verdicts.index].to_numpy())
    if calibration is not None:
        sets = calibration.sample_sets(verdicts[[f"p_{c}" for c in classes]].to_numpy(), alpha, classes)
        ood = table.groupby(groups, sort=False)["out_of_distribution"].any().loc[verdicts.index] \
            if "out_of_distribution" in table else None
        verdicts = pd.concat([verdicts, set_columns(sets, classes, ood, index=verdicts.index)], axis=1)
    atomic_write_csv(verdicts.reset_index(), path, index=False)
    console.print(f"{len(verdicts)} sample verdict(s) into {path} ({rule}; mean log-probability of each sample's "
                  "images)", soft_wrap=True, highlight=False)


class ToExplain:
    """What ``explain`` explains: ``X`` (images or a feature table), and when the input says
    them, the true ``labels``, the ``samples`` (groups) and the row ``names``."""

    def __init__(self, X: Any, labels: list | None = None, samples: list | None = None,
                 names: list | None = None) -> None:
        self.X, self.labels, self.samples, self.names = X, labels, samples, names


def _table_to_explain(model: Any, model_dir: Path, inputs: list[Path]) -> ToExplain:
    """A table model explains rows of one feature-table CSV (``label`` and ``group`` columns,
    as ``extract`` writes them, give labels and samples)."""
    import pandas as pd

    from ..model import FeatureMismatchError
    from ..model.columns import align_columns

    if len(inputs) != 1 or inputs[0].suffix.lower() != ".csv":
        fail(f"{model_dir}: this model was trained on a feature table; pass one CSV with its columns")
    try:
        table = pd.read_csv(inputs[0])
    except (OSError, ValueError) as exc:
        fail(f"{inputs[0]}: not a readable CSV ({exc})")
    try:
        with warnings.catch_warnings():  # path/label columns are expected extras
            warnings.simplefilter("ignore")
            X = align_columns(table, model.feature_names_)
    except FeatureMismatchError as exc:
        fail(f"{inputs[0]}: {exc}")

    def column(name: str) -> list | None:
        return table[name].astype(str).tolist() if name in table else None

    return ToExplain(X, column("label"), column("group") if "label" in table else None, column("path"))


def _images_to_explain(inputs: list[Path], read: dict, channels: list[str] | None) -> tuple[ToExplain, list]:
    """Images (with ``channels``: mappings channel -> image) of files or a dataset, with their
    true labels and samples when the input is a labelled dataset; and the errors."""
    from ..io import load_dataset, load_images
    from ..io.files import source_of

    paths = expand_inputs(inputs)
    report = load_images(paths, **read, on_error="skip", progress=len(paths) >= 20, channels=channels)
    errors = list(report.errors)
    if not report.images:
        report_errors(errors)
        fail("no file could be read", code=1)
    labels = samples = None
    if len(inputs) == 1 and (inputs[0].is_dir() or inputs[0].suffix.lower() == ".csv"):
        try:  # a labelled dataset: true classes and samples, for held-out explanations and the confusion matrix
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = load_dataset(inputs[0])
            known = {str(p): (str(c), str(g)) for p, c, g in zip(ds.paths, ds.labels, ds.groups, strict=True)}
            found = [known.get(source_of(im)) for im in report.images]
            if None not in found:
                labels, samples = [f[0] for f in found], [f[1] for f in found]
        except (HybridTMDError, ValueError):
            pass
    return ToExplain(report.images, labels, samples), errors


DEFAULT_EXPLAIN_FOLDS = 5


def _held_out_folds(model: Any, inputs: ToExplain, folds: int | None) -> tuple[int | None, str | None]:
    """(the folds to explain ``inputs`` out-of-fold on, None) or (None, why they cannot be).
    Without ``folds``: :data:`DEFAULT_EXPLAIN_FOLDS`, fewer when a class has fewer samples (at
    least 2)."""
    import numpy as np

    from ..splits import fold_shortfall

    if inputs.labels is None or inputs.samples is None:
        return None, ("the inputs carry no labels and samples (a labelled dataset folder or manifest, or a feature "
                      "table with label and group columns)")
    if model.features_ is not None and not model.features_.is_per_image():
        return None, "the model's features are not per image (an embedding PCA fitted on all images)"
    labels, samples = np.asarray(inputs.labels), np.asarray(inputs.samples)
    counts = {c: len(set(samples[labels == c])) for c in sorted(set(labels))}
    wanted = folds if folds is not None else max(2, min(DEFAULT_EXPLAIN_FOLDS, *counts.values()))
    if len(counts) < 2:
        return None, "one class only: nothing to tell apart out-of-fold"
    short = fold_shortfall(labels, samples, wanted)
    return (None, short) if short else (wanted, None)


@command("explain")
def explain_command(
    model_dir: ModelDirArgument,
    inputs: Annotated[list[Path], typer.Argument(help="AFM files or one dataset folder/manifest; for a model "
                                                 "trained on a table, one feature-table CSV.")],
    output: ReportFolder = Path("explain"),
    max_images: Annotated[int, typer.Option(min=0, help="Images that get their own waterfall and height-map "
                                            "figure.")] = 3,
    top_latent: Annotated[int, typer.Option(min=0, help="Latent dimensions per class linked to descriptors.")] = 3,
    group_by: Annotated[str, typer.Option(help="Attribution groups: auto (the model's: families, per channel for a "
                                          "multichannel model), family, channel, channel_family.")] = "auto",
    held_out: Annotated[bool | None, typer.Option(
        "--held-out/--in-sample", help="Held out: refit the model's settings on StratifiedGroupKFold folds by sample "
        "and explain each image by the fold model that never saw its sample (the default when the inputs carry "
        "labels: a labelled dataset, or a table with label and group columns). In-sample: explain the saved model "
        "itself (the default for unlabelled files).")] = None,
    folds: Annotated[int | None, typer.Option(min=2, help="Held-out folds (StratifiedGroupKFold by sample); "
                                              "default 5, fewer when a class has fewer samples.")] = None,
    channel: ChannelOption = None,
    pixel_size_nm: PixelSizeOption = None,
    z_unit: ZUnitOption = None,
    z_scale: ZScaleOption = None,
    alpha: Annotated[float | None, typer.Option(help="Error rate of the conformal prediction set shown beside "
                                                "each image's label (a model trained with [model] conformal; "
                                                "default 0.1 for such a model).")] = None,
    quiet: QuietOption = False,
) -> None:
    """Why the model decided, in one self-contained report.html: attributions to feature groups
    (descriptor families and the latent block; exact TreeSHAP sums for the XGBoost head, exact
    group Shapley values for any other head), per-image cards (height map, latent-map overlays,
    waterfall, nearest training examples, the out-of-distribution flag, the prediction set of a
    model trained with conformal sets), latent dimensions named by their strongest physical
    correlate, and the figures as PNG and tables as CSV beside it. On a
    labelled dataset the predictions and explanations are held out (out-of-fold, grouped by
    sample) unless --in-sample; the report's headline says which."""
    use_file_backend()
    check_output_dir(output)
    from ..explanation.groups import GROUP_BY
    from ..io.files import needed_channels
    from ..model.conformal import DEFAULT_ALPHA

    if group_by not in GROUP_BY:
        fail(f"--group-by must be one of {', '.join(GROUP_BY)}, not {group_by!r}")
    model = load_classifier(model_dir)
    _usable_calibration(model, model_dir, alpha, by_sample=False)
    errors: list[tuple[str, str]] = []
    if model.features_ is None:
        to_explain = _table_to_explain(model, model_dir, inputs)
    else:
        to_explain, errors = _images_to_explain(inputs, read_options(channel, pixel_size_nm, z_unit, z_scale),
                                                needed_channels(model.features_))
    usable, obstacle = _held_out_folds(model, to_explain, folds)
    if held_out and obstacle:
        fail(f"--held-out: {obstacle}; --in-sample explains the saved model instead")
    if held_out is None and obstacle and to_explain.labels is not None:
        warn_line(f"not held out: {obstacle}; explaining the saved model in-sample (the report says so)")
    options = {"max_images": max_images, "top_latent": top_latent, "group_by": group_by,
               "alpha": DEFAULT_ALPHA if alpha is None else alpha, "quiet": quiet}
    page, how = _write_explanation(model, to_explain, output, None if held_out is False else usable, options)
    console.print(f"explained {len(to_explain.X)} input(s) {how}; report written to {page} (figures as PNG, "
                  "CSV tables)", soft_wrap=True, highlight=False)
    report_errors(errors)
    exit_for(errors)


def _write_explanation(model: Any, to_explain: ToExplain, output: Path, folds: int | None,
                       options: dict[str, Any]) -> tuple[Path, str]:
    """Write the report: held out on ``folds`` folds, else by the saved model; (its path, how)."""
    from ..reporting import write_held_out_report, write_report

    images = None if model.features_ is None else to_explain.X
    options = dict(options)
    show = not options.pop("quiet", False)
    try:
        if folds is None:
            with ProgressBar(show, None, f"explaining {len(to_explain.X)} input(s) with the saved model"):
                page = write_report(model, to_explain.X, output, labels=to_explain.labels, names=to_explain.names,
                                    samples=to_explain.samples, **options)
            return page, "with the saved model"
        table = model.transform_features(to_explain.X)  # the saved model's columns, computed once
        # two steps per fold (its fit, then its predictions and explanations), counted as they end
        with ProgressBar(show, 2 * folds, f"held-out explanation of {len(to_explain.X)} input(s) ({folds} folds: "
                         "fit, explain)") as bar, counting_fits(bar.advance):
            page = write_held_out_report(
                model, images, to_explain.labels, to_explain.samples, output, n_splits=folds,
                max_cards=options["max_images"], top_latent=options["top_latent"], group_by=options["group_by"],
                alpha=options["alpha"], table=table, names=to_explain.names,
                title="Why the model decides: held-out images",
                summary="Models: the saved model's settings refitted on each fold's training samples (the saved "
                        "model itself is explained with --in-sample).")
        return page, f"out-of-fold (StratifiedGroupKFold({folds}) by sample, the model refitted per fold)"
    except (HybridTMDError, ValueError, RuntimeError) as exc:
        fail(str(exc), code=1)

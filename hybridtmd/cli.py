"""Command line: ``hybridtmd --help``.

Batch commands never stop at a bad file: they process the good ones, then list every bad file
with its reason. The exit code is 0 when all files worked, 1 when some were skipped (the others
are still processed and written), 2 on usage errors.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from . import __version__
from .errors import HybridTMDError

app = typer.Typer(
    name="hybridtmd",
    help="Explainable classification of TMD films from AFM height maps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _report_errors(errors: list[tuple[str, str]], what: str = "file") -> None:
    """One line per bad input on stderr, never truncated: ``skipped <file>: <reason>``."""
    if not errors:
        return
    err_console.print(f"[bold yellow]{len(errors)} {what}(s) skipped:[/]")
    for path, reason in errors:
        err_console.print(f"  skipped {escape(str(path))}: {escape(reason)}", soft_wrap=True, highlight=False)


def _exit_for(errors: list) -> None:
    """Exit 1 when some files failed (they were reported); the good ones were processed."""
    if errors:
        raise typer.Exit(1)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"hybridtmd {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True)
    ] = False,
) -> None:
    """Explainable classification of TMD films from AFM height maps."""


@app.command()
def synth(
    outdir: Annotated[Path, typer.Argument(help="Folder to write TIFFs, manifest.csv and samples.json into.")],
    n_samples: Annotated[int, typer.Option(help="Number of samples (split over classes as in the paper).")] = 60,
    images_per_sample: Annotated[int, typer.Option(help="Images per sample.")] = 2,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 128,
    scan_min_um: Annotated[float, typer.Option(help="Smallest scan size (µm).")] = 1.0,
    scan_max_um: Annotated[float, typer.Option(help="Largest scan size (µm).")] = 2.5,
    spread: Annotated[float, typer.Option(help="Within-class spread of sample parameters (1 = default).")] = 1.0,
    artefacts: Annotated[
        bool, typer.Option(help="Add instrument artefacts (tip, tilt, bow, offsets, scars, noise).")
    ] = True,
    float16: Annotated[bool, typer.Option(help="Store heights as float16 (half the size).")] = False,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same files.")] = 0,
) -> None:
    """Write a synthetic TMD AFM dataset (paper's file-name convention + manifest)."""
    from .datasets import Artefacts, write_synthetic_dataset

    if scan_min_um <= 0 or scan_max_um < scan_min_um:
        _fail("scan sizes must satisfy 0 < --scan-min-um <= --scan-max-um")
    try:
        with console.status(f"rendering {n_samples * images_per_sample} images..."):
            ds = write_synthetic_dataset(
                outdir, n_samples=n_samples, images_per_sample=images_per_sample, size_px=size,
                scan_size_um=(scan_min_um, scan_max_um), spread=spread, seed=seed,
                artefacts=None if artefacts else Artefacts.none(), tiff_dtype="float16" if float16 else "float32",
            )
    except (ValueError, HybridTMDError) as exc:
        _fail(str(exc))
    console.print(f"wrote {len(ds)} images of {len(set(ds.groups))} samples to {outdir}")
    console.print(ds.summary().to_string())


@app.command()
def info(
    files: Annotated[list[Path], typer.Argument(help="AFM files to describe.")],
    pixel_size_nm: Annotated[float | None, typer.Option(help="Pixel size (nm) for files that lack one.")] = None,
) -> None:
    """Shape, pixel size, scan size and height range of AFM files."""
    from .io import image_info, load_images

    report = load_images(files, pixel_size_nm=pixel_size_nm, on_error="skip")
    for image in report.images:  # one greppable line per file
        facts = image_info(image)
        facts.pop("file")
        line = ", ".join(f"{key} {value}" for key, value in facts.items())
        console.print(f"[bold]{escape(image.name)}[/]: {escape(line)}", soft_wrap=True, highlight=False)
    _report_errors(report.errors)
    _exit_for(report.errors)


@app.command()
def dataset(
    source: Annotated[Path, typer.Argument(help="Folder of AFM files or manifest CSV.")],
    pattern: PatternOption = None,
) -> None:
    """How many images and samples per class a dataset has (checks it parses)."""
    from .io import DEFAULT_FILENAME_PATTERN, load_dataset

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = load_dataset(source, pattern=pattern or DEFAULT_FILENAME_PATTERN)
    except (HybridTMDError, ValueError) as exc:
        _fail(str(exc))
    console.print(ds.summary().to_string())
    console.print(f"{len(ds)} images, {len(set(ds.groups.tolist()))} samples, {len(ds.classes)} classes")
    _report_errors(ds.skipped)


@app.command()
def level(
    inputs: Annotated[list[Path], typer.Argument(help="AFM files, or one dataset folder/manifest.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for levelled TIFFs.")],
    config: Annotated[Path | None, typer.Option(help="TOML config with a \\[level] table.")] = None,
    pixel_size_nm: Annotated[float | None, typer.Option(help="Pixel size (nm) for files that lack one.")] = None,
) -> None:
    """Level AFM files (row alignment, background, scars...) and write float32 TIFFs in nm."""
    from rich.progress import track

    from .config import load_config
    from .io import load_images, save_image
    from .preprocess import level as level_image

    try:
        cfg = load_config(config)
    except HybridTMDError as exc:
        _fail(str(exc))
    paths = _expand_inputs(inputs)
    report = load_images(paths, pixel_size_nm=pixel_size_nm, on_error="skip", progress=len(paths) > 20)
    errors = list(report.errors)
    written = 0
    for image in track(report.images, description="levelling", disable=len(report.images) < 20):
        try:
            save_image(level_image(image, cfg.level), output / (Path(image.source).stem + ".tif"))
            written += 1
        except (HybridTMDError, ValueError, OSError) as exc:
            errors.append((str(image.source), str(exc)))
    console.print(f"levelled {written} of {len(paths)} file(s) into {output}")
    _report_errors(errors)
    _exit_for(errors)


@app.command()
def gallery(
    source: Annotated[Path, typer.Argument(help="Folder of AFM files or manifest CSV.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG file to write.")] = Path("gallery.png"),
    per_class: Annotated[int, typer.Option(help="Images per class.")] = 4,
    config: Annotated[Path | None, typer.Option(help="TOML config with a \\[level] table.")] = None,
) -> None:
    """Save a figure with example levelled height maps of every class."""
    from .config import load_config
    from .io import load_dataset

    try:
        cfg = load_config(config)
        ds = load_dataset(source)
    except (HybridTMDError, ValueError) as exc:
        _fail(str(exc))
    from .plotting import save_class_gallery
    from .preprocess import level as level_image

    examples = ds.first_per_class(per_class)
    report = examples.load(on_error="skip")
    images = [level_image(image, cfg.level) for image in report.images]
    save_class_gallery(images, examples.labels[report.indices], output, per_class=per_class, classes=ds.classes)
    console.print(f"wrote {output}")
    _report_errors(report.errors)


@app.command()
def embed(
    source: Annotated[Path, typer.Argument(help="Dataset folder or manifest CSV.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="CSV to write: path,label,group,latent_...")] = Path(
        "embeddings.csv"),
    backbone: Annotated[str, typer.Option(help="efficientnet_lite0 (offline default), resnet18..resnet152.")] = (
        "efficientnet_lite0"),
    weights: Annotated[Path | None, typer.Option(help="Weights file (e.g. torchvision's resnet18-*.pth).")] = None,
    tta: Annotated[str, typer.Option(help="Test-time augmentation: none, or d4 (8 rotations/flips).")] = "none",
    input_size: Annotated[int | None, typer.Option(help="CNN input side in pixels (default: backbone's).")] = None,
    tile_size: Annotated[int | None, typer.Option(help="Embed square tiles of this many pixels, averaged.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 32,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    cache_dir: Annotated[Path | None, typer.Option(help="Embedding cache folder (reruns load vectors).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config with a \\[level] table.")] = None,
    level: Annotated[bool, typer.Option(help="Level images before embedding.")] = True,
    pattern: PatternOption = None,
) -> None:
    """Frozen-CNN embeddings of every image of a dataset, one CSV row per image."""
    import pandas as pd

    from ._utils import atomic_write_csv
    from .config import load_config
    from .embeddings import CNNEmbedder
    from .io import DEFAULT_FILENAME_PATTERN, load_dataset
    from .preprocess import level as level_image

    if output.suffix.lower() != ".csv":
        _fail(f"output must be a .csv file, got {output.name}")
    embedder = CNNEmbedder(backbone, weights=weights, tta=tta, input_size=input_size, tile_size_px=tile_size,
                           batch_size=batch_size, device=device, cache_dir=cache_dir)
    try:
        cfg = load_config(config)
        n_features = len(embedder.get_feature_names_out())  # checks every option and finds the weights now
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = load_dataset(source, pattern=pattern or DEFAULT_FILENAME_PATTERN)
    except (HybridTMDError, ValueError) as exc:
        _fail(str(exc))
    report = ds.load(on_error="skip", progress=len(ds) > 20)
    errors = list(report.errors)
    images, rows = [], []
    for image, index in zip(report.images, report.indices, strict=True):
        try:
            images.append(level_image(image, cfg.level) if level else image)
            rows.append(index)
        except (HybridTMDError, ValueError) as exc:
            errors.append((str(image.source), str(exc)))
    if not images:
        _report_errors(errors)
        _fail("no image could be read", code=1)
    table = pd.concat([ds.to_frame().iloc[rows][["path", "label", "group"]].reset_index(drop=True),
                       embedder.fit_transform(images)], axis=1)
    atomic_write_csv(table, output, index=False)
    cached = f", {embedder.n_cache_hits_} from cache" if cache_dir is not None else ""
    console.print(f"embedded {len(images)} of {len(ds)} image(s) with {backbone} ({n_features}-d, tta {tta}{cached}) "
                  f"into {output}", soft_wrap=True, highlight=False)
    _report_errors(ds.skipped + errors)
    _exit_for(errors)


@app.command()
def extract(
    source: Annotated[Path, typer.Argument(help="Dataset folder or manifest CSV.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="CSV file to write.")] = Path("features.csv"),
    families: Annotated[str | None, typer.Option(help="Comma-separated descriptor families (default: all).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config with a \\[level] table.")] = None,
    level_images: Annotated[bool, typer.Option("--level/--no-level", help="Level images first.")] = True,
    n_jobs: Annotated[int, typer.Option(help="Parallel workers (-1 = all cores).")] = 1,
    pattern: PatternOption = None,
    store: Annotated[
        Path | None, typer.Option(help="Write/resume a partitioned parquet feature store in this folder instead "
                                       "of one CSV (needs pyarrow).")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="With --store: serial | joblib (--n-jobs processes) | dask (default: serial, "
                                      "dask if --address).")
    ] = None,
    address: Annotated[str | None, typer.Option(help="With --store: dask scheduler, e.g. tcp://host:8786.")] = None,
    partition_size: Annotated[
        int | None, typer.Option(help="With --store: files per partition (unit of work and of resume; default 256).")
    ] = None,
) -> None:
    """Physical descriptors of every image of a dataset, one CSV row per image.

    Columns: path, label, group (and split if the dataset has one), then one column per
    descriptor (see `hybridtmd.descriptors.list_descriptors()` for units and definitions).
    CSV, not parquet: parquet would need pyarrow, which is not a core dependency. Undefined
    values are empty cells; their reasons go to <output>.reasons.csv. Bad files are reported
    and skipped; the others are written.

    With --store DIR: the same descriptors go to a feature store (hybridtmd.store: one parquet
    file per partition, column path then descriptors; read it with hybridtmd.store.read_store).
    Running the same command again after a crash computes only the unfinished partitions;
    another file list or other settings on the same folder is an error. Labels stay in the dataset
    manifest (join on path).
    """
    from ._utils import atomic_write_csv
    from .config import load_config
    from .descriptors import DescriptorExtractor
    from .io import DEFAULT_FILENAME_PATTERN, load_dataset

    if output.suffix.lower() != ".csv":
        _fail(f"{output}: only .csv output is supported (parquet would need pyarrow, not a core dependency)")
    try:
        cfg = load_config(config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = load_dataset(source, pattern=pattern or DEFAULT_FILENAME_PATTERN)
        names = None if families is None else [f.strip() for f in families.split(",") if f.strip()]
        extractor = DescriptorExtractor(families=names, level=level_images, level_config=cfg.level, n_jobs=n_jobs,
                                        progress=len(ds) >= 20)
        extractor.get_feature_names_out()  # unknown family names fail here, before any work
    except (HybridTMDError, ValueError) as exc:
        _fail(str(exc))
    if store is None and (scheduler is not None or address is not None or partition_size is not None):
        _fail("--scheduler, --address and --partition-size need --store")
    if store is not None:
        from .store import extract_to_store

        try:
            done = extract_to_store(ds.paths, store, extractor=extractor, partition_size=partition_size or 256,
                                    scheduler=scheduler, n_jobs=n_jobs, address=address, progress=len(ds) >= 20)
        except (HybridTMDError, ValueError) as exc:
            _fail(str(exc))
        console.print(f"{store}: {len(done.written)} partition(s) written, {len(done.already_done)} already done, "
                      f"{len(done.failed)} failed (of {done.n_partitions}); {done.n_rows} row(s)")
        for index, reason in done.failed:
            err_console.print(f"  partition {index} failed: {escape(reason)}", soft_wrap=True, highlight=False)
        if done.failed:
            err_console.print("run the same command again to retry the failed partition(s)")
        errors = list(ds.skipped) + done.errors
        _report_errors(errors)
        _exit_for(errors + done.failed)
        return
    report = ds.load(on_error="skip", progress=len(ds) >= 20)
    errors = list(ds.skipped) + list(report.errors)
    if not report.images:
        _report_errors(errors)
        _fail("no readable image in the dataset", code=1)
    import pandas as pd

    features = extractor.fit_transform(report.images)
    meta = ds.to_frame().iloc[report.indices].reset_index(drop=True)
    table = pd.concat([meta, features], axis=1)
    atomic_write_csv(table, output, index=False)
    reasons = extractor.reasons_
    reasons_path = output.with_name(output.stem + ".reasons.csv")
    if len(reasons):
        reasons = reasons.assign(path=[str(ds.paths[report.indices[i]]) for i in reasons["image"]])
        atomic_write_csv(reasons[["path", "feature", "reason"]], reasons_path, index=False)
        console.print(f"{len(reasons)} undefined value(s) (NaN); reasons in {reasons_path}")
    console.print(f"wrote {len(table)} row(s) x {features.shape[1]} descriptor(s) to {output}")
    _report_errors(errors)
    _exit_for(errors)


CONFIG_HELP = "TOML config with \\[level] \\[descriptors] \\[embeddings] \\[model] tables."
# options shared by the commands on labelled datasets
LabelledDataset = Annotated[Path, typer.Argument(help="Labelled dataset folder or manifest CSV.")]
ConfigOption = Annotated[Path | None, typer.Option(help=CONFIG_HELP)]
FoldsOption = Annotated[int, typer.Option(help="StratifiedGroupKFold folds (grouped by sample).")]
RepeatsOption = Annotated[int, typer.Option(help="Repeats with reshuffled folds.")]
ReportFolder = Annotated[Path, typer.Option("-o", "--output", help="Report folder.")]
PatternOption = Annotated[str | None, typer.Option(help="File-name regex with (?P<label>) and (?P<group>).")]


def _labelled_images(source: Path, pattern: str | None, pixel_size_nm: float | None = None):
    """Read a labelled dataset: (dataset, images, labels, groups, paths, errors); bad files are
    collected in ``errors`` as (file, reason), the rest is returned."""
    from .io import DEFAULT_FILENAME_PATTERN, load_dataset

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = load_dataset(source, pattern=pattern or DEFAULT_FILENAME_PATTERN, pixel_size_nm=pixel_size_nm)
    except (HybridTMDError, ValueError) as exc:
        _fail(str(exc))
    report = ds.load(on_error="skip", progress=len(ds) >= 20)
    errors = list(ds.skipped) + list(report.errors)
    if not report.images:
        _report_errors(errors)
        _fail("no readable image in the dataset", code=1)
    idx = report.indices
    return ds, report.images, ds.labels[idx], ds.groups[idx], [str(ds.paths[i]) for i in idx], errors


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (commands run without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG atomically and free it."""
    import matplotlib.pyplot as plt

    from ._utils import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def _model_from_config(config: Path | None, cache_dir: Path | None = None):
    from .config import load_config
    from .model import HybridClassifier

    try:
        model = HybridClassifier.from_config(load_config(config))
    except HybridTMDError as exc:
        _fail(str(exc))
    features = model.features
    if cache_dir is not None and features.embedder is not None:
        features.embedder.set_params(cache_dir=cache_dir)
    return model


@app.command()
def train(
    source: LabelledDataset,
    output: Annotated[Path, typer.Option("-o", "--output", help="Model directory to write.")] = Path("model"),
    config: ConfigOption = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Embedding cache folder (reruns load vectors).")] = None,
    pattern: PatternOption = None,
    pixel_size_nm: Annotated[float | None, typer.Option(help="Pixel size (nm) for files that lack one.")] = None,
) -> None:
    """Fit the hybrid classifier (descriptors + embeddings -> XGBoost) and save it (no pickle)."""
    model = _model_from_config(config, cache_dir)
    _, images, labels, groups, _, errors = _labelled_images(source, pattern, pixel_size_nm)
    with console.status(f"computing features of {len(images)} images and fitting..."):
        try:
            model.fit(images, labels, groups=groups)
        except (HybridTMDError, ValueError) as exc:
            _fail(str(exc), code=1)
    model.save(output)
    summary = model.training_summary_
    groups_text = ", ".join(f"{g} {len(c)}" for g, c in model.feature_groups_.items())
    console.print(f"trained on {summary['n_images']} images of {summary['n_samples']} samples, "
                  f"{model.n_features_in_} features ({groups_text}); classes {summary['class_counts']}; "
                  f"saved to {output}", soft_wrap=True, highlight=False)
    _report_errors(errors)
    _exit_for(errors)


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="Model directory written by `hybridtmd train`.")],
    inputs: Annotated[list[Path], typer.Argument(help="AFM files, or one dataset folder/manifest.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="CSV to write.")] = Path("predictions.csv"),
    pixel_size_nm: Annotated[float | None, typer.Option(help="Pixel size (nm) for files that lack one.")] = None,
) -> None:
    """Predict the material of AFM files: label, confidence, probability per class, OOD flag.

    Files that cannot be read or processed are reported and skipped; the others are predicted.
    An image flagged out_of_distribution is unlike every training sample: do not trust its label.
    """
    import pandas as pd

    from ._utils import atomic_write_csv
    from .io import load_images
    from .model import HybridClassifier

    if output.suffix.lower() != ".csv":
        _fail(f"output must be a .csv file, got {output.name}")
    try:
        model = HybridClassifier.load(model_dir)
    except HybridTMDError as exc:
        _fail(str(exc))
    if model.features_ is None:
        _fail(f"{model_dir}: this model was trained on a feature table; predict from images needs an image model")
    paths = _expand_inputs(inputs)
    report = load_images(paths, pixel_size_nm=pixel_size_nm, on_error="skip", progress=len(paths) >= 20)
    errors = list(report.errors)
    frames = []
    try:
        frames.append(model.predict_frame(report.images, index=[str(im.source) for im in report.images]))
    except (HybridTMDError, ValueError, RuntimeError):
        for image in report.images:  # isolate the image(s) that break the batch
            try:
                frames.append(model.predict_frame([image], index=[str(image.source)]))
            except (HybridTMDError, ValueError, RuntimeError) as exc:
                errors.append((str(image.source), f"{type(exc).__name__}: {exc}"))
    if frames:
        table = pd.concat(frames).rename_axis("file").reset_index()
        atomic_write_csv(table, output, index=False)
        n_ood = int(table["out_of_distribution"].sum()) if "out_of_distribution" in table else 0
        console.print(f"predicted {len(table)} of {len(paths)} file(s) into {output}"
                      + (f"; {n_ood} flagged out of distribution" if n_ood else ""), soft_wrap=True)
    _report_errors(errors)
    if not frames:
        _fail("no file could be predicted", code=1)
    _exit_for(errors)


@app.command()
def evaluate(
    source: LabelledDataset,
    output: ReportFolder = Path("report"),
    config: ConfigOption = None,
    folds: FoldsOption = 5,
    repeats: RepeatsOption = 1,
    seed: Annotated[int, typer.Option(help="Seed of the fold shuffling.")] = 0,
    ablation: Annotated[bool, typer.Option(help="Also descriptors-only and embeddings-only, same folds.")] = True,
    low_data: Annotated[str | None, typer.Option(help="Training caps per class, e.g. 64,32,16,8.")] = None,
    sequential: Annotated[bool, typer.Option(help="Also the sequential modality (classes added one by one).")] = False,
    multilabel: Annotated[bool, typer.Option(help="Also the multilabel modality (elements Mo, W, S, Se).")] = False,
    cache_dir: Annotated[Path | None, typer.Option(help="Embedding cache folder (reruns load vectors).")] = None,
    pattern: PatternOption = None,
) -> None:
    """Grouped cross-validation report of the hybrid classifier: per-fold CSV, summary Markdown,
    confusion matrix and ablation figure (folds never share a sample)."""
    plt = _pyplot()
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedGroupKFold

    from . import evaluation as ev
    from ._utils import atomic_write_csv, atomic_write_text

    model = _model_from_config(config, cache_dir)
    _, images, labels, groups, paths, errors = _labelled_images(source, pattern)
    cv = StratifiedGroupKFold(folds, shuffle=True)
    output.mkdir(parents=True, exist_ok=True)
    with console.status(f"computing features of {len(images)} images..."):
        table = clone(model.features).fit_transform(images)
    table_model = model.set_params(features=None)
    results: dict[str, ev.Evaluation] = {}
    with console.status("cross-validating..."):
        try:
            common = {"cv": cv, "n_repeats": repeats, "random_state": seed}
            hybrid = ({"hybrid": table_model}, table, labels, groups)
            results["hybrid"] = (ev.ablation(table_model, table, labels, groups, **common) if ablation
                                 else ev.evaluate(*hybrid, **common))
            if low_data:
                caps = [int(c) for c in low_data.split(",") if c.strip()]
                results["low_data"] = ev.evaluate_low_data(*hybrid, caps=caps, **common)
            if sequential:
                results["sequential"] = ev.evaluate_sequential(*hybrid, **common)
            if multilabel:
                results["multilabel"] = ev.evaluate_multilabel(*hybrid, **common)
        except (HybridTMDError, ValueError) as exc:
            _fail(str(exc), code=1)
    lines = [f"# Grouped cross-validation: {source}", "",
             f"{len(images)} images, {len(set(groups.tolist()))} samples; StratifiedGroupKFold({folds}) by sample "
             f"x {repeats} repeat(s), seed {seed}; mean ± std over folds.", ""]
    for name, result in results.items():
        atomic_write_csv(result.folds, output / f"{name}_folds.csv", index=False)
        metrics = (("hamming_accuracy", "subset_accuracy", "fit_seconds") if name == "multilabel" else
                   ("accuracy", "balanced_accuracy", "macro_f1", "fit_seconds"))
        lines += [f"## {name}", "", result.to_markdown(metrics), ""]
        console.print(f"[bold]{name}[/]")
        console.print(result.format(metrics[:2] if name == "multilabel" else ("accuracy", "macro_f1")),
                      highlight=False)
    main = results["hybrid"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    ev.plot_evaluation(main, ax=axes[0])
    ev.plot_confusion(main.confusion["hybrid"], ax=axes[1], title="hybrid: confusion (all folds)")
    _save_figure(fig, output / "evaluation.png")
    atomic_write_text(output / "summary.md", "\n".join(lines + ["![evaluation](evaluation.png)", ""]))
    console.print(f"report written to {output} (summary.md, evaluation.png, *_folds.csv)")
    _report_errors(errors)
    _exit_for(errors)


@app.command()
def compare(
    source: LabelledDataset,
    output: ReportFolder = Path("compare"),
    config: ConfigOption = None,
    folds: FoldsOption = 5,
    max_folds: Annotated[int | None, typer.Option(help="Run only the first N folds (quick runs).")] = None,
    repeats: RepeatsOption = 1,
    seed: Annotated[int, typer.Option(help="Seed of folds and of the fine-tuning.")] = 0,
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs (paper: 60, early stopping).")] = 60,
    backbone: Annotated[str, typer.Option(help="Fine-tuned backbone (falls back to efficientnet_lite0 "
                                          "when its weights are absent).")] = "resnet18",
    input_size: Annotated[int | None, typer.Option(help="Fine-tuning input side (default: backbone's).")] = None,
    frozen: Annotated[bool, typer.Option(help="Train only the fine-tuning head (the paper's transfer mode).")] = False,
    pattern: PatternOption = None,
) -> None:
    """Hybrid vs descriptors-only vs embeddings-only vs end-to-end fine-tuning, identical folds:
    accuracy, macro-F1, per-class recall, wall time and FLOPs, and the fine-tune/hybrid cost ratio."""
    plt = _pyplot()
    from sklearn.model_selection import StratifiedGroupKFold

    from ._utils import atomic_write_csv, atomic_write_text
    from .baseline import FineTuneClassifier, compute_ratios
    from .baseline import compare as run_compare
    from .evaluation import plot_evaluation, split_limit

    model = _model_from_config(config)
    _, images, labels, groups, _, errors = _labelled_images(source, pattern)
    from .embeddings import list_backbones

    trained = backbone if backbone in list_backbones(available_only=True) else f"efficientnet_lite0 ({backbone} " \
        "weights absent, see `hybridtmd embed --help`)"
    fine_tune = FineTuneClassifier(backbone, epochs=epochs, input_size=input_size, frozen=frozen,
                                   random_state=seed, progress=False)
    cv = split_limit(StratifiedGroupKFold(folds, shuffle=True), max_folds)
    with console.status(f"comparing on {len(images)} images ({folds} folds"
                        f"{f', first {max_folds}' if max_folds else ''}, {epochs} fine-tuning epochs)..."):
        try:
            result = run_compare(images, labels, groups, hybrid=model, fine_tune=fine_tune,
                                 level_config=model.features.level_config, cv=cv, n_repeats=repeats,
                                 random_state=seed)
        except (HybridTMDError, ValueError) as exc:
            _fail(str(exc), code=1)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(result.folds, output / "compare_folds.csv", index=False)
    metrics = ("accuracy", "macro_f1", "fit_seconds", "predict_seconds", "fit_flops", "predict_flops")
    recalls = [c for c in result.folds.columns if c.startswith("recall[")]
    ratio_text = ", ".join(f"{k} {v:.3g}x" for k, v in compute_ratios(result).items())
    n_folds = result.folds.groupby("model").size().iloc[0]
    lines = [f"# Hybrid vs fine-tuning: {source}", "",
             f"{len(images)} images, {len(set(groups.tolist()))} samples; StratifiedGroupKFold({folds}) by sample, "
             f"{n_folds} fold(s) run, seed {seed}; fine-tuning: {epochs} epoch(s) max, backbone {trained}"
             f"{' (frozen)' if frozen else ''}. Mean ± std over folds.", "",
             result.to_markdown(metrics), "", "Recall per class:", "", result.to_markdown(recalls), "",
             f"Cost ratio fine-tune / hybrid: {ratio_text}", ""]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    plot_evaluation(result, "accuracy", ax=axes[0])
    plot_evaluation(result, "macro_f1", ax=axes[1])
    _save_figure(fig, output / "compare.png")
    atomic_write_text(output / "compare.md", "\n".join(lines + ["![comparison](compare.png)", ""]))
    console.print(result.format(("accuracy", "macro_f1", "fit_seconds")), highlight=False)
    console.print(f"cost ratio fine-tune / hybrid: {ratio_text}", highlight=False)
    console.print(f"report written to {output} (compare.md, compare.png, compare_folds.csv)")
    _report_errors(errors)
    _exit_for(errors)


@app.command()
def explain(
    model_dir: Annotated[Path, typer.Argument(help="Model directory written by `hybridtmd train`.")],
    inputs: Annotated[list[Path], typer.Argument(help="AFM files or one dataset folder/manifest; for a model "
                                                 "trained on a table, one feature-table CSV.")],
    output: ReportFolder = Path("explain"),
    max_images: Annotated[int, typer.Option(help="Images that get their own waterfall and height-map figure.")] = 3,
    top_latent: Annotated[int, typer.Option(help="Latent dimensions per class linked to descriptors.")] = 3,
    pixel_size_nm: Annotated[float | None, typer.Option(help="Pixel size (nm) for files that lack one.")] = None,
) -> None:
    """Why the model decided: exact TreeSHAP figures (beeswarm per class, top features, feature groups,
    waterfalls, each image beside its explanation, latent-physical correlations, the paper's PCA analysis)
    and one self-contained report.html with every figure embedded."""
    _pyplot()  # figures are written to files, never shown
    import pandas as pd

    from .explanation import write_report
    from .io import load_dataset, load_images
    from .model import FeatureMismatchError, HybridClassifier, align_columns

    try:
        model = HybridClassifier.load(model_dir)
    except HybridTMDError as exc:
        _fail(str(exc))
    if type(model.classifier_).__name__ != "XGBClassifier":
        _fail(f"{model_dir}: exact TreeSHAP explains the XGBoost head, this model has a "
              f"{type(model.classifier_).__name__}; train with the default head to explain")
    errors: list[tuple[str, str]] = []
    labels = names = None
    if model.features_ is None:  # a table model explains rows of a feature table
        if len(inputs) != 1 or inputs[0].suffix.lower() != ".csv":
            _fail(f"{model_dir}: this model was trained on a feature table; pass one CSV with its columns")
        try:
            table = pd.read_csv(inputs[0])
        except (OSError, ValueError) as exc:
            _fail(f"{inputs[0]}: not a readable CSV ({exc})")
        try:
            with warnings.catch_warnings():  # path/label columns are expected extras
                warnings.simplefilter("ignore")
                X = align_columns(table, model._column_names())
        except FeatureMismatchError as exc:
            _fail(f"{inputs[0]}: {exc}")
        labels = table["label"].astype(str).tolist() if "label" in table else None
        names = table["path"].astype(str).tolist() if "path" in table else None
    else:
        paths = _expand_inputs(inputs)
        report = load_images(paths, pixel_size_nm=pixel_size_nm, on_error="skip", progress=len(paths) >= 20)
        errors = list(report.errors)
        if not report.images:
            _report_errors(errors)
            _fail("no file could be read", code=1)
        X = report.images
        if len(inputs) == 1 and (inputs[0].is_dir() or inputs[0].suffix.lower() == ".csv"):
            try:  # a labelled dataset: true classes colour the PCA scatter and sit beside predictions
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = load_dataset(inputs[0])
                label_of = {str(p): str(c) for p, c in zip(ds.paths, ds.labels, strict=True)}
                found = [label_of.get(str(im.source)) for im in X]
                labels = found if None not in found else None
            except (HybridTMDError, ValueError):
                labels = None
    with console.status(f"explaining {len(X)} input(s)..."):
        try:
            page = write_report(model, X, output, labels=labels, names=names, max_images=max_images,
                                top_latent=top_latent)
        except (HybridTMDError, ValueError, RuntimeError) as exc:
            _fail(str(exc), code=1)
    console.print(f"explained {len(X)} input(s); report written to {page} (figures as PNG, CSV tables)",
                  soft_wrap=True, highlight=False)
    _report_errors(errors)
    _exit_for(errors)


def _expand_inputs(inputs: list[Path]) -> list[Path]:
    """One dataset folder/manifest, or a list of files."""
    from .io import SUPPORTED_SUFFIXES, load_dataset

    if len(inputs) == 1 and (inputs[0].is_dir() or inputs[0].suffix.lower() == ".csv"):
        try:
            return load_dataset(inputs[0]).paths
        except HybridTMDError:
            if inputs[0].is_dir():
                return sorted(p for p in inputs[0].iterdir() if p.suffix.lower() in SUPPORTED_SUFFIXES)
            raise
    return list(inputs)


def main() -> None:  # pragma: no cover - console entry point
    app()

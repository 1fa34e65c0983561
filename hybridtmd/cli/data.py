"""Commands on files and datasets: synth, info, dataset, level, gallery, embed, extract."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from .._utils.files import path_text
from ..errors import HybridTMDError
from .common import (
    LEVEL_CONFIG_HELP,
    ChannelOption,
    ChannelsOption,
    LevelConfigOption,
    NJobsOption,
    PatternOption,
    PixelSizeOption,
    ZScaleOption,
    ZUnitOption,
    check_finite,
    command,
    expand_inputs,
    load_dataset_images,
    load_level_config,
    parse_channels,
    read_dataset,
    read_options,
    use_file_backend,
)
from .messages import console, exit_for, fail, report_errors, safe_text, warn_line
from .outputs import check_not_input_folder, check_output_dir, check_output_file, write_table
from .scaling import AddressOption, PartitionSizeOption, SchedulerOption, check_reachable, extract_into_store

if TYPE_CHECKING:
    from ..io import Dataset

#: Smallest image side synth writes: the readers' own minimum (hybridtmd.io.MIN_SIDE_PX).
MIN_SYNTH_SIZE = 32


@command("synth")
def synth_command(
    outdir: Annotated[Path, typer.Argument(help="Folder to write TIFFs, manifest.csv and samples.json into.")],
    n_samples: Annotated[int, typer.Option(min=1, help="Number of samples (split over classes as in the paper).")] = 60,
    images_per_sample: Annotated[int, typer.Option(min=1, help="Images per sample.")] = 2,
    size: Annotated[int, typer.Option(min=MIN_SYNTH_SIZE, help="Image side in pixels (at least 32, the smallest "
                                                               "image the readers accept).")] = 128,
    scan_min_um: Annotated[float, typer.Option(callback=check_finite, help="Smallest scan size (µm).")] = 1.0,
    scan_max_um: Annotated[float, typer.Option(callback=check_finite, help="Largest scan size (µm).")] = 2.5,
    spread: Annotated[float, typer.Option(min=0, callback=check_finite, help="Within-class spread of sample "
                                          "parameters (1 = default, 0 = every sample of a class alike).")] = 1.0,
    artefacts: Annotated[
        bool, typer.Option(help="Add instrument artefacts (tip, tilt, bow, offsets, scars, noise).")
    ] = True,
    float16: Annotated[bool, typer.Option(help="Store heights as float16 (half the size).")] = False,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Random seed; same seed, same files.")] = 0,
) -> None:
    """Write a synthetic TMD AFM dataset (paper's file-name convention + manifest)."""
    from ..datasets import write_synthetic_dataset
    from ..datasets.morphology import Artefacts

    if scan_min_um <= 0 or scan_max_um < scan_min_um:
        fail("scan sizes must satisfy 0 < --scan-min-um <= --scan-max-um")
    check_output_dir(outdir)
    try:
        with console.status(f"rendering {n_samples * images_per_sample} images..."):
            ds = write_synthetic_dataset(
                outdir, n_samples=n_samples, images_per_sample=images_per_sample, size_px=size,
                scan_size_um=(scan_min_um, scan_max_um), spread=spread, seed=seed,
                artefacts=None if artefacts else Artefacts.none(), tiff_dtype="float16" if float16 else "float32",
            )
    except (ValueError, HybridTMDError) as exc:
        fail(str(exc))
    console.print(f"wrote {len(ds)} images of {len(set(ds.groups))} samples to {outdir}")
    console.print(ds.summary().to_string())


@command("info")
def info_command(
    files: Annotated[list[Path], typer.Argument(help="AFM files to describe.")],
    channel: ChannelOption = None,
    pixel_size_nm: PixelSizeOption = None,
    z_unit: ZUnitOption = None,
    z_scale: ZScaleOption = None,
) -> None:
    """Each file's instrument, channels (index, name, canonical key, unit, direction), scan size,
    the channel that would be used (marked *), and its shape, pixel size and height range."""
    from ..io import image_info, list_channels, load_image

    errors: list[tuple[str, str]] = []
    for folder in (p for p in files if p.is_dir()):
        if not expand_inputs([folder]):
            errors.append((str(folder), "folder holds no file of a readable type"))
    for path in (f for p in files for f in (expand_inputs([p]) if p.is_dir() else [p])):
        try:
            channels = list_channels(path)
        except HybridTMDError as exc:
            errors.append((str(path), getattr(exc, "reason", str(exc))))
            continue
        try:
            image = load_image(path, **read_options(channel, pixel_size_nm, z_unit, z_scale))
        except HybridTMDError as exc:
            image = None
            errors.append((str(path), getattr(exc, "reason", str(exc))))
        _print_file_info(path, channels, image, image_info)
    report_errors(errors)
    exit_for(errors)


def _print_file_info(path: Path, channels, image, image_info) -> None:
    """One header line per file (greppable), then one line per channel."""
    meta = image.metadata if image is not None else {}
    facts = [str(meta[k]) for k in ("vendor", "instrument") if meta.get(k)]
    if meta.get("acquisition_time"):
        facts.append(f"acquired {meta['acquisition_time']}")
    if image is not None:
        shown = image_info(image)
        shown.pop("file")
        shown["z_unit"] = image.z_unit
        facts.append(", ".join(f"{key} {value}" for key, value in shown.items()))
    line = f"{safe_text(path.name)}: {safe_text('; '.join(facts)) or 'not readable with these options'}"
    console.print(escape(line), soft_wrap=True, highlight=False)
    used = image.metadata.get("channel_index") if image is not None else None
    for row in channels.itertuples():
        chosen = (used == row.index) if used is not None else bool(row.default)
        scan = ("" if row.scan_x_nm != row.scan_x_nm else  # NaN: the file does not say
                f", scan {row.scan_x_nm / 1e3:.4g} x {row.scan_y_nm / 1e3:.4g} um")
        text = (f"  {'*' if chosen else ' '} {row.index} {safe_text(row.name)} ({row.key}), "
                f"{safe_text(_loaded_unit(row.unit))}, {row.rows}x{row.cols} px{scan}"
                f"{', ' + row.direction if row.direction else ''}")
        console.print(escape(text), soft_wrap=True, highlight=False)


def _loaded_unit(stored: str | None) -> str:
    """A channel's unit as loaded: lengths become nm (the stored unit said beside it)."""
    from ..io.image import is_length_unit

    if not stored:
        return "no unit"
    return stored if not is_length_unit(stored) or stored == "nm" else f"nm (stored in {stored})"


@command("dataset")
def dataset_command(
    source: Annotated[Path, typer.Argument(help="Folder of AFM files or manifest CSV.")],
    pattern: PatternOption = None,
) -> None:
    """How many images and samples per class a dataset has (checks it parses), and which files
    hold the same content under two samples or twice in one (a digest of every file's bytes)."""
    ds = read_dataset(source, pattern)
    console.print(ds.summary().to_string())
    console.print(f"{len(ds)} images, {len(set(ds.groups.tolist()))} samples, {len(ds.classes)} classes")
    for first, second, reason in ds.content_duplicates(progress=len(ds) >= 50):
        warn_line(f"{second}: {reason} ({first})")
    report_errors(ds.skipped)


@command("level")
def level_command(
    inputs: Annotated[list[Path], typer.Argument(help="AFM files, or one dataset folder/manifest.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for levelled TIFFs.")],
    config: LevelConfigOption = None,
    channel: ChannelOption = None,
    pixel_size_nm: PixelSizeOption = None,
    z_unit: ZUnitOption = None,
    z_scale: ZScaleOption = None,
) -> None:
    """Level AFM files (row alignment, background, scars...) and write float32 TIFFs in nm."""
    from .._utils.progress import track
    from ..io import load_images, save_image
    from ..preprocess import level

    check_output_dir(output)
    level_config = load_level_config(config)
    paths = expand_inputs(inputs)
    check_not_input_folder(output, paths)
    names = levelled_names(paths)
    report = load_images(paths, **read_options(channel, pixel_size_nm, z_unit, z_scale), on_error="skip",
                         progress=len(paths) > 20)
    errors = list(report.errors)
    written = 0
    for image, index in track(zip(report.images, report.indices, strict=True), total=len(report.images),
                              description="levelling", show=len(report.images) >= 20):
        try:
            save_image(level(image, level_config), output / names[index])
            written += 1
        except (HybridTMDError, ValueError, OSError) as exc:
            errors.append((str(image.source), str(exc)))
    console.print(f"levelled {written} of {len(paths)} file(s) into {output}")
    report_errors(errors)
    exit_for(errors)


def levelled_names(paths: list[Path]) -> list[str]:
    """The TIFF each input is levelled into: ``<stem>.tif``, or ``<name>.tif`` (suffix kept, e.g.
    ``x.stp.tif`` beside ``x.top.tif``) for inputs whose stems would give one name; names that
    still coincide (one name in two folders) are an error before any work. Names are compared
    case-insensitively, as some file systems do."""
    from collections import Counter

    def key(name: str) -> str:
        return name.casefold()

    stems = Counter(key(p.stem) for p in paths)
    names = [p.stem + ".tif" if stems[key(p.stem)] == 1 else p.name + ".tif" for p in paths]
    seen: dict[str, Path] = {}
    for path, name in zip(paths, names, strict=True):
        first = seen.setdefault(key(name), path)
        if first != path:
            fail(f"{first} and {path} would both be levelled into {name}; level them into separate folders")
    return names


@command("gallery")
def gallery_command(
    source: Annotated[Path, typer.Argument(help="Folder of AFM files or manifest CSV.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG file to write.")] = Path("gallery.png"),
    per_class: Annotated[int, typer.Option(min=1, help="Images per class.")] = 4,
    config: LevelConfigOption = None,
    pattern: PatternOption = None,
    channel: ChannelOption = None,
    pixel_size_nm: PixelSizeOption = None,
    z_unit: ZUnitOption = None,
    z_scale: ZScaleOption = None,
) -> None:
    """Save a figure with example levelled height maps of every class (exit code 1 when files were
    skipped)."""
    from ..io.figures import save_class_gallery
    from ..preprocess import level

    use_file_backend()
    check_output_file(output, (".png", ".pdf", ".svg", ".jpg"))
    level_config = load_level_config(config)
    ds = read_dataset(source, pattern, read_options(channel, pixel_size_nm, z_unit, z_scale))
    examples = ds.first_per_class(per_class)
    report = examples.load(on_error="skip")
    if not report.images:
        report_errors(report.errors)
        fail("no readable image for the gallery", code=1)
    images = [level(image, level_config) for image in report.images]
    save_class_gallery(images, examples.labels[report.indices], output, per_class=per_class, classes=ds.classes)
    console.print(f"wrote {output}")
    report_errors(report.errors)
    exit_for(report.errors)


@command("embed")
def embed_command(
    source: Annotated[Path, typer.Argument(help="Dataset folder or manifest CSV.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="CSV or .parquet to write: path,label,group,"
                                                                "latent_...")] = Path("embeddings.csv"),
    backbone: Annotated[str, typer.Option(help="efficientnet_lite0 (offline default), resnet18..resnet152.")] = (
        "efficientnet_lite0"),
    weights: Annotated[Path | None, typer.Option(help="Weights file (e.g. torchvision's resnet18-*.pth).")] = None,
    tta: Annotated[str, typer.Option(help="Test-time augmentation: none, or d4 (8 rotations/flips).")] = "none",
    input_size: Annotated[int | None, typer.Option(help="CNN input side in pixels (default: backbone's).")] = None,
    tile_size: Annotated[int | None, typer.Option(help="Embed square tiles of this many pixels, averaged.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 32,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    cache_dir: Annotated[Path | None, typer.Option(help="Embedding cache folder (reruns load vectors).")] = None,
    config: LevelConfigOption = None,
    level_images: Annotated[bool, typer.Option("--level/--no-level", help="Level images before embedding.")] = True,
    pattern: PatternOption = None,
    channel: ChannelOption = None,
    pixel_size_nm: PixelSizeOption = None,
    z_unit: ZUnitOption = None,
    z_scale: ZScaleOption = None,
) -> None:
    """Frozen-CNN embeddings of every image of a dataset, one row per image (CSV, or parquet when
    the output ends in .parquet)."""
    import pandas as pd

    from ..embeddings import CNNEmbedder
    from ..preprocess import level

    check_output_file(output, inputs=[source])
    embedder = CNNEmbedder(backbone, weights=weights, tta=tta, input_size=input_size, tile_size_px=tile_size,
                           batch_size=batch_size, device=device, cache_dir=cache_dir)
    level_config = load_level_config(config)
    try:
        n_features = len(embedder.get_feature_names_out())  # checks every option and finds the weights now
    except (HybridTMDError, ValueError) as exc:
        fail(str(exc))
    ds = read_dataset(source, pattern, read_options(channel, pixel_size_nm, z_unit, z_scale))
    report = load_dataset_images(ds)
    errors = list(report.errors)
    images, rows = [], []
    for image, index in zip(report.images, report.indices, strict=True):
        try:
            images.append(level(image, level_config) if level_images else image)
            rows.append(index)
        except (HybridTMDError, ValueError) as exc:
            errors.append((str(image.source), str(exc)))
    if not images:
        report_errors(errors)
        fail("no image could be read", code=1)
    table = pd.concat([ds.to_frame().iloc[rows][["path", "label", "group"]].reset_index(drop=True),
                       embedder.fit_transform(images)], axis=1)
    write_table(table, output)
    cached = f", {embedder.n_cache_hits_} from cache" if cache_dir is not None else ""
    console.print(f"embedded {len(images)} of {len(ds)} image(s) with {backbone} ({n_features}-d, tta {tta}{cached}) "
                  f"into {output}", soft_wrap=True, highlight=False)
    report_errors(ds.skipped + errors)
    exit_for(errors)


@command("extract")
def extract_command(
    source: Annotated[Path, typer.Argument(help="Folder of AFM files (labelled only with --pattern) or manifest CSV.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="CSV or .parquet file to write.")] = Path(
        "features.csv"),
    families: Annotated[str, typer.Option(
        help="Comma-separated descriptor families or descriptor names (default: the default set; release-0.1.0: "
             "that release's).")] = "default",
    channels: ChannelsOption = None,
    config: Annotated[Path | None, typer.Option(help=LEVEL_CONFIG_HELP[:-1] + " (and, with --store --embeddings, "
                                                     "an \\[embeddings] table).")] = None,
    level_images: Annotated[bool, typer.Option("--level/--no-level", help="Level images first.")] = True,
    n_jobs: NJobsOption = 1,
    pattern: PatternOption = None,
    channel: ChannelOption = None,
    pixel_size_nm: PixelSizeOption = None,
    z_unit: ZUnitOption = None,
    z_scale: ZScaleOption = None,
    store: Annotated[
        Path | None, typer.Option(help="Write/resume a partitioned parquet feature store in this folder instead "
                                       "of one CSV (needs pyarrow).")
    ] = None,
    embeddings: Annotated[bool, typer.Option(
        help="With --store: also the frozen-CNN embeddings of each image (the --config file's \\[embeddings] "
             "table, default EfficientNet-Lite0), beside the descriptors.")] = False,
    scheduler: SchedulerOption = None,
    address: AddressOption = None,
    partition_size: PartitionSizeOption = None,
) -> None:
    """Physical descriptors of every image of a dataset, one row per image.

    Columns: path, then label, group (and split if the dataset has one) when the files are
    labelled - by a manifest, or by their names with --pattern (--pattern default: the paper's
    convention); a folder without either is read whole, unlabelled. Then one column per
    descriptor (see `hybridtmd.descriptors.list_descriptors()` for units and definitions).
    CSV, or parquet when the output ends in .parquet (needs pyarrow, the parquet extra).
    Undefined values are empty cells; their reasons go to <output>.reasons.csv. Bad files are
    reported and skipped; the others are written. With --channels height,phase each file gives
    the descriptors of each channel (phase columns phase__<name>, in the channel's unit); a file
    lacking one of the channels is a bad file.

    With --store DIR: the same descriptors go to a feature store (hybridtmd.model.store: one parquet
    file per partition, column path then descriptors, with --embeddings then latent__ columns; read
    it with hybridtmd.model.store.read_store, or train/evaluate --store DIR). Running the same
    command again after a crash computes only the unfinished partitions; another file list or
    other settings (families, channels, reading options, backbone, weights) on the same folder is
    an error. Labels stay in the dataset manifest (joined on path by train and evaluate).
    """
    from ..descriptors import DescriptorExtractor

    if store is None:
        check_output_file(output, inputs=[source])
    else:
        check_output_dir(store)
    if address is not None:
        check_reachable(address)
    level_config = load_level_config(config)
    ds = files_to_describe(source, pattern, read_options(channel, pixel_size_nm, z_unit, z_scale))
    names = [f.strip() for f in families.split(",") if f.strip()] or "default"
    per_channel = parse_channels(channels, names)
    try:
        extractor = DescriptorExtractor(families=names, level_images=level_images, level_config=level_config,
                                        n_jobs=n_jobs, progress=len(ds) >= 20, channels=per_channel)
        extractor.get_feature_names_out()  # unknown family names fail here, before any work
    except (HybridTMDError, ValueError) as exc:
        fail(str(exc))
    if store is None and (scheduler is not None or address is not None or partition_size is not None or embeddings):
        fail("--scheduler, --address, --partition-size and --embeddings need --store")
    if store is not None:
        if any(options for options in ds.row_options or []):  # the store would read every file alike
            fail(f"{source}: the manifest sets reading options per file (pixel_size_nm, channel, z_unit, z_scale "
                 "columns), which --store does not read yet; extract without --store")
        extract_into_store(ds, store, extractor, store_embedder(config) if embeddings else None, scheduler=scheduler,
                           n_jobs=n_jobs, address=address, partition_size=partition_size,
                           read=read_options(channel, pixel_size_nm, z_unit, z_scale))
    else:
        _extract_to_csv(ds, output, extractor)


def store_embedder(config: Path | None) -> Any:
    """The embedder of ``extract --store --embeddings``: the config's [embeddings] table."""
    from ..config import load_config
    from ..embeddings import CNNEmbedder

    try:
        settings = load_config(config).embeddings
    except HybridTMDError as exc:
        fail(str(exc))
    if not settings.enabled:
        fail(f"--embeddings: {config} switches the embeddings off ([embeddings] enabled = false)")
    return CNNEmbedder(**settings.options)


def files_to_describe(source: Path, pattern: str | None, options: dict) -> Dataset:
    """What ``extract`` reads: a manifest's dataset, a folder's files labelled by an explicit
    ``--pattern``, or else every readable file of the folder, unlabelled (empty labels and
    groups; a name that happens to look like the convention labels nothing, and a file that
    cannot be read is reported with its own reason)."""
    from ..io import Dataset

    if pattern is not None or not source.is_dir() or (source / "manifest.csv").exists():
        return read_dataset(source, pattern, options)
    paths = expand_inputs([source])
    if not paths:
        fail(f"{source}: no file of a readable type in the folder")
    return Dataset(paths, [""] * len(paths), [""] * len(paths), **options)


def _extract_to_csv(ds, output: Path, extractor) -> None:
    import pandas as pd

    from .._utils.files import atomic_write_csv
    from ..io.files import needed_channels

    report = load_dataset_images(ds, needed_channels(extractor))
    errors = list(ds.skipped) + list(report.errors)
    if not report.images:
        report_errors(errors)
        fail("no readable image in the dataset", code=1)
    features, reasons = extractor.fit(report.images).transform_with_reasons(report.images)
    meta = ds.to_frame().iloc[report.indices].reset_index(drop=True)
    if not any(ds.labels):  # an unlabelled folder: no label or group columns to invent
        meta = meta[["path"]]
    table = pd.concat([meta, features], axis=1)
    write_table(table, output)
    reasons_path = output.with_name(output.stem + ".reasons.csv")
    if len(reasons):
        reasons = reasons.assign(path=[path_text(ds.paths[report.indices[i]]) for i in reasons["image"]])
        atomic_write_csv(reasons[["path", "feature", "reason"]], reasons_path, index=False)
        console.print(f"{len(reasons)} undefined value(s) (NaN); reasons in {reasons_path}")
    console.print(f"wrote {len(table)} row(s) x {features.shape[1]} descriptor(s) to {output}")
    report_errors(errors)
    exit_for(errors)

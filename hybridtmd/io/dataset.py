"""Labelled, sample-grouped collections of AFM files: :class:`Dataset`, CSV manifests and the
file-name convention that labels a folder of files."""

from __future__ import annotations

import csv
import os
import re
import unicodedata
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._utils.digests import array_digest
from .._utils.files import atomic_write_csv, path_text
from .._utils.progress import track
from ..errors import AFMInputError, AFMInputWarning, HybridTMDError
from .files import readable_files
from .image import AFMImage, height_images, warn_input
from .manifest_checks import content_duplicates, is_non_regular, manifest_path, outside_folder, outside_warning
from .readers import load_channels, load_image

#: Default file-name convention of the seed paper: underscore-separated fields
#: ``<anything>_<MATERIAL>_<anything>_<SAMPLEID>[_<more>...].<ext>``; a last field of
#: ``train``/``val``/``test`` is taken as the split. E.g. ``synthetic_WS2_2.0um_0012_img1.tif``.
DEFAULT_FILENAME_PATTERN = r"^[^_]+_(?P<label>[^_]+)_[^_]+_(?P<group>[^_.]+)(?:_[^.]*)?\.[A-Za-z0-9-]+$"
#: Split names recognised as the last underscore field of a file name.
SPLIT_NAMES = ("train", "val", "test")
#: Labels that are missing values written as text, never class names.
MISSING_LABELS = ("nan", "none", "null", "na", "n/a")
#: Manifest columns that override the dataset's reading options for one row.
ROW_OPTIONS = ("pixel_size_nm", "channel", "z_unit", "z_scale")


@dataclass
class LoadReport:
    """What a batch load produced: the images that loaded and the files that did not."""

    images: list[AFMImage]  # or mappings channel -> AFMImage when loaded with ``channels``
    indices: np.ndarray  # positions in the dataset of ``images``
    errors: list[tuple[str, str]]  # (file, reason) for every file that failed
    #: (file, file, reason) for identical images (same pixels) that a grouped split cannot see
    duplicates: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class Dataset:
    """A labelled, sample-grouped list of AFM files; images are read lazily on access.

    ``groups`` are sample ids: every cross-validation in hybridtmd splits by them, so images of
    one sample are never in both train and test. ``pixel_size_nm``, ``channel``, ``z_unit`` and
    ``z_scale`` are passed to :func:`~hybridtmd.io.load_image` for every file; ``row_options``
    (one dict per file, from a manifest's columns of the same names) override them per file.
    """

    paths: list[Path]
    labels: np.ndarray
    groups: np.ndarray
    splits: np.ndarray | None = None
    pixel_size_nm: float | tuple[float, float] | None = None
    channel: str | int | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    z_unit: str | None = None
    z_scale: float | None = None
    row_options: list[dict] | None = None

    def __post_init__(self) -> None:
        self.paths = [Path(p) for p in self.paths]
        self.labels = np.asarray(self.labels, dtype=object)
        self.groups = np.asarray(self.groups, dtype=object)
        if self.splits is not None:
            self.splits = np.asarray(self.splits, dtype=object)
        n = len(self.paths)
        if len(self.labels) != n or len(self.groups) != n or (self.splits is not None and len(self.splits) != n):
            raise ValueError("paths, labels, groups (and splits) must have the same length")
        if self.row_options is not None and len(self.row_options) != n:
            raise ValueError("row_options must have one entry per path")

    def read_options(self, index: int) -> dict:
        """The :func:`~hybridtmd.io.load_image` keywords of file ``index``."""
        options = {"pixel_size_nm": self.pixel_size_nm, "channel": self.channel, "z_unit": self.z_unit,
                   "z_scale": self.z_scale}
        if self.row_options is not None:
            options.update({k: v for k, v in self.row_options[index].items() if v is not None})
        return options

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> AFMImage:
        return load_image(self.paths[index], **self.read_options(index))

    def __iter__(self) -> Iterator[AFMImage]:
        for i in range(len(self)):
            yield self[i]

    @property
    def classes(self) -> list[str]:
        """Sorted distinct labels."""
        return sorted(set(self.labels.tolist()))

    def subset(self, indices: Iterable[int]) -> Dataset:
        """A dataset of the given positions (e.g. one CV fold)."""
        idx = np.asarray(list(indices), dtype=int)
        return Dataset(
            paths=[self.paths[i] for i in idx], labels=self.labels[idx], groups=self.groups[idx],
            splits=None if self.splits is None else self.splits[idx],
            pixel_size_nm=self.pixel_size_nm, channel=self.channel, z_unit=self.z_unit, z_scale=self.z_scale,
            row_options=None if self.row_options is None else [self.row_options[i] for i in idx],
        )

    def first_per_class(self, n: int) -> Dataset:
        """The first ``n`` files of each class, classes in :attr:`classes` order (e.g. a gallery)."""
        return self.subset(i for cls in self.classes for i in np.flatnonzero(self.labels == cls)[:n])

    def to_frame(self):
        """The dataset as a pandas DataFrame (path, label, group[, split]); a name's bytes that are
        not valid text are written ``\\xNN`` (:func:`hybridtmd._utils.files.path_text`)."""
        import pandas as pd

        frame = pd.DataFrame({"path": [path_text(p) for p in self.paths], "label": self.labels, "group": self.groups})
        if self.splits is not None:
            frame["split"] = self.splits
        return frame

    def load(self, on_error: str = "skip", progress: bool = False, channels: Sequence[str] | None = None
             ) -> LoadReport:
        """Read every image. ``on_error="skip"`` collects bad files in ``report.errors``
        (file, reason) and keeps going; ``"raise"`` stops at the first one. ``channels``
        (e.g. ``["height", "phase"]``): every item is a mapping channel -> AFMImage of those
        channels (:func:`~hybridtmd.io.load_channels`; the height channel is the dataset's
        ``channel``), and a file lacking one is a bad file.

        Identical images (same pixels, by digest) of two different samples are a train/test leak
        no grouped split can see: they are listed in ``report.duplicates`` with a warning.
        """
        report = load_images(self.paths, options=[self.read_options(i) for i in range(len(self))],
                             on_error=on_error, progress=progress, channels=channels)
        report.duplicates = self._cross_group_duplicates(report)
        for first, second, reason in report.duplicates:
            warn_input(f"{second}: {reason} ({first})")
        return report

    def _cross_group_duplicates(self, report: LoadReport) -> list[tuple[str, str, str]]:
        seen: dict[str, int] = {}
        found = []
        for image, i in zip(height_images(report.images), report.indices, strict=True):
            digest = array_digest(image.height)
            j = seen.setdefault(digest, int(i))
            if j != i and self.groups[j] != self.groups[i]:
                found.append((str(self.paths[j]), str(self.paths[i]),
                              f"same pixels as an image of another sample ({self.groups[i]} vs {self.groups[j]})"))
        return found

    def content_duplicates(self, progress: bool = False) -> list[tuple[str, str, str]]:
        """(first file, later file, reason) for files with the same bytes, under two samples (a
        leak) or twice in one sample, from a digest of each file (no image is decoded)."""
        return content_duplicates(self.paths, [str(g) for g in self.groups], progress=progress)

    def check_folds(self, n_folds: int) -> None:
        """ValueError when a class has fewer samples than ``n_folds`` (grouped folds cannot then
        put each class in every fold); the message counts samples, not images
        (:func:`hybridtmd.splits.check_fold_feasibility`)."""
        from ..splits import check_fold_feasibility  # scikit-learn loads only when folds are asked for

        check_fold_feasibility(self.labels, self.groups, n_folds)

    def summary(self):
        """Images and samples per class, as a DataFrame."""
        frame = self.to_frame()
        return frame.groupby("label").agg(images=("path", "size"), samples=("group", "nunique"))


def load_images(
    paths: Iterable[str | Path],
    *,
    pixel_size_nm: float | Sequence[float] | None = None,
    channel: str | int | None = None,
    z_unit: str | None = None,
    z_scale: float | None = None,
    options: Sequence[dict] | None = None,
    on_error: str = "skip",
    progress: bool = False,
    channels: Sequence[str] | None = None,
) -> LoadReport:
    """Load many files, skipping (and reporting) the bad ones instead of stopping.

    ``pixel_size_nm``, ``channel``, ``z_unit`` and ``z_scale`` go to :func:`load_image` for every
    file; ``options`` (one dict of the same keywords per file) replaces them per file. With
    ``channels`` (e.g. ``["height", "phase"]``, what a multichannel model needs) every item is a
    mapping channel -> AFMImage (:func:`load_channels`, ``channel`` choosing the height
    channel); a file lacking one of them is reported with that reason and skipped.
    """
    if on_error not in ("skip", "raise"):
        raise ValueError("on_error must be 'skip' or 'raise'")
    paths = [Path(p) for p in paths]
    shared = {"pixel_size_nm": pixel_size_nm, "channel": channel, "z_unit": z_unit, "z_scale": z_scale}
    if options is not None and len(options) != len(paths):
        raise ValueError("options must have one dict per path")
    images, indices, errors = [], [], []
    for i, p in track(enumerate(paths), total=len(paths), description="loading", show=progress):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("default", AFMInputWarning)
                read = shared if options is None else options[i]
                images.append(load_image(p, **read) if channels is None else load_channels(p, channels, **read))
            indices.append(i)
        except HybridTMDError as exc:
            if on_error == "raise":
                raise
            errors.append((str(p), getattr(exc, "reason", str(exc))))
    return LoadReport(images=images, indices=np.asarray(indices, dtype=int), errors=errors)


def load_dataset(
    source: str | Path,
    *,
    pattern: str = DEFAULT_FILENAME_PATTERN,
    pixel_size_nm: float | tuple[float, float] | None = None,
    channel: str | int | None = None,
    z_unit: str | None = None,
    z_scale: float | None = None,
    recursive: bool = False,
) -> Dataset:
    """Describe a labelled AFM dataset from a CSV manifest or a folder of files.

    Parameters
    ----------
    source : path
        A ``.csv`` manifest (UTF-8, with or without a byte-order mark) with columns
        ``path,label,group`` and optionally ``split`` (train/val/test) and per-file
        ``pixel_size_nm`` (one number or ``x,y``), ``channel``, ``z_unit``, ``z_scale``; paths are
        relative to the manifest's folder. A folder containing ``manifest.csv`` uses it;
        otherwise labels and groups are parsed from file names with ``pattern``.
    pattern : str
        Regular expression with named groups ``label`` and ``group`` (and optionally ``split``)
        matched against each file name. The default is the seed paper's convention,
        :data:`DEFAULT_FILENAME_PATTERN`: ``<anything>_<MATERIAL>_<anything>_<SAMPLEID>_...``.
        Files with a supported suffix that do not match are listed in ``Dataset.skipped``
        with a warning.
    pixel_size_nm, channel, z_unit, z_scale :
        Reading options of every file (:func:`~hybridtmd.io.load_image`); a manifest's columns
        override them per file.

    Notes
    -----
    Labels and sample ids are stripped of surrounding whitespace (labels that differ only by it
    are one class, with a warning). Errors: a label that is a missing value (``nan``, ``None``...),
    a sample carrying two labels, a split other than train/val/test. A row repeated exactly is
    used once, with a warning.
    """
    source = Path(source)
    if not source.exists():
        raise AFMInputError(source, "dataset path not found")
    if source.is_dir() and (source / "manifest.csv").exists():
        source = source / "manifest.csv"
    options = {"pixel_size_nm": pixel_size_nm, "channel": channel, "z_unit": z_unit, "z_scale": z_scale}
    if source.is_file():
        return _dataset_from_manifest(source, options)
    regex = re.compile(pattern)
    if "label" not in regex.groupindex or "group" not in regex.groupindex:
        raise ValueError("pattern needs named groups 'label' and 'group'")
    return _dataset_from_names(source, regex, recursive=recursive, options=options)


#: why a folder entry named like an AFM file is not read (reading a FIFO would block forever)
NOT_REGULAR = "not a regular file (a folder, FIFO, device or broken link)"


def _dataset_from_names(folder: Path, regex: re.Pattern, *, recursive: bool, options: dict) -> Dataset:
    """Labels, groups and splits parsed from the names of the readable files in ``folder``."""
    paths, labels, groups, splits, skipped = [], [], [], [], []
    for f in readable_files(folder, recursive=recursive):
        if not f.is_file():  # named like an AFM file, so reported rather than silently left out
            skipped.append((str(f), NOT_REGULAR))
            continue
        m = regex.match(f.name)
        if m is None:
            skipped.append((str(f), "file name does not match the dataset pattern"))
            continue
        paths.append(f)
        # as text a table, a CSV or a model manifest can hold (a name's stray bytes written \xNN)
        labels.append(path_text(m.group("label")))
        groups.append(path_text(m.group("group")))
        split = m.groupdict().get("split")
        last = f.stem.rsplit("_", 1)[-1].lower()
        splits.append(split or (last if last in SPLIT_NAMES else None))
    unmatched = sum(reason != NOT_REGULAR for _, reason in skipped)
    if unmatched:
        warn_input(f"{folder}: {unmatched} file(s) do not match the name pattern and were skipped")
    if not paths:
        raise AFMInputError(folder, "no AFM files matching the dataset pattern")
    rows = [{"label": lab, "group": grp} for lab, grp in zip(labels, groups, strict=True)]
    labels, groups = _checked_labels(folder, rows, lines=[str(p.name) for p in paths])
    has_split = any(s is not None for s in splits)
    return Dataset(paths, labels, groups, splits if has_split else None, skipped=skipped, **options)


def _manifest_rows(manifest: Path) -> list[dict[str, str]]:
    """The rows of a manifest CSV, checked for the columns and values every dataset needs."""
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as fh:  # -sig: spreadsheets write a BOM
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AFMInputError(manifest, f"cannot read manifest ({exc})") from None
    if not rows:
        raise AFMInputError(manifest, "manifest has no rows")
    # column names and paths stripped; labels and groups are stripped (with a warning) by _checked_labels
    rows = [{str(k).strip(): v if isinstance(v, str) else "" for k, v in r.items() if k} for r in rows]
    for r in rows:
        r.update({k: r[k].strip() for k in r if k not in ("label", "group")})
    missing = {"path", "label", "group"} - set(rows[0])
    if missing:
        raise AFMInputError(manifest, f"manifest lacks column(s) {sorted(missing)}; needs path,label,group[,split]")
    for i, r in enumerate(rows, start=2):
        if not r["label"].strip() or not r["group"].strip() or not r["path"]:
            raise AFMInputError(manifest, f"line {i}: empty path, label or group")
    return rows


def _checked_labels(source: Path, rows: list[dict], lines: list[str]) -> tuple[list[str], list[str]]:
    """Labels and groups stripped, in Unicode normal form NFC, and checked: no missing-value
    labels, one label per sample. Labels that differ only by whitespace or by Unicode form
    (composed "é" vs "e" + combining accent, as macOS writes file names) are one class, with a
    warning; labels that differ only by compatibility characters (subscript "₂" vs "2") stay two
    classes, with a warning."""
    raw_labels = [str(r["label"]) for r in rows]
    labels = [unicodedata.normalize("NFC", lab.strip()) for lab in raw_labels]
    groups = [unicodedata.normalize("NFC", str(r["group"]).strip()) for r in rows]
    for where, lab in zip(lines, labels, strict=True):
        if lab.lower() in MISSING_LABELS or not lab:
            raise AFMInputError(source, f"{where}: label {lab!r} is a missing value, not a class name")
    variants: dict[str, set[str]] = {}
    for raw, lab in zip(raw_labels, labels, strict=True):
        variants.setdefault(lab, set()).add(raw)
    for lab, forms in variants.items():
        if len(forms) > 1:
            warn_input(f"{source}: labels {sorted(forms)} differ only by whitespace or Unicode form; "
                       f"taken as one class {lab!r}")
    look_alike: dict[str, set[str]] = {}
    for lab in variants:
        look_alike.setdefault(unicodedata.normalize("NFKC", lab), set()).add(lab)
    for forms in look_alike.values():
        if len(forms) > 1:
            warn_input(f"{source}: labels {sorted(forms)} differ only by compatibility characters (e.g. "
                       f"subscript digits); kept as {len(forms)} classes - rename them if they are one")
    label_of: dict[str, tuple[str, str]] = {}
    for where, lab, grp in zip(lines, labels, groups, strict=True):
        first = label_of.setdefault(grp, (lab, where))
        if first[0] != lab:
            raise AFMInputError(source, f"sample {grp!r} carries two labels ({first[0]!r} at {first[1]}, {lab!r} at "
                                        f"{where}); a sample is one material")
    return labels, groups


def _manifest_key(path: Path) -> str:
    """The file a manifest row points at, for duplicate detection (symlink loops do not resolve)."""
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):
        return os.path.abspath(path)


def _row_options(manifest: Path, rows: list[dict[str, str]]) -> list[dict] | None:
    """Per-row reading options from the manifest's pixel_size_nm, channel, z_unit, z_scale columns."""
    present = [c for c in ROW_OPTIONS if c in rows[0]]
    if not present:
        return None
    out = []
    for line, r in enumerate(rows, start=2):
        options: dict = {}
        for column in present:
            text = r.get(column, "")
            if not text:
                continue
            if column in ("pixel_size_nm", "z_scale"):
                try:
                    value = tuple(float(v) for v in text.replace(";", ",").split(","))
                except ValueError:
                    raise AFMInputError(manifest, f"line {line}: {column} {text!r} is not a number") from None
                options[column] = value if column == "pixel_size_nm" else value[0]
            else:
                options[column] = text
        out.append(options)
    return out


def _dataset_from_manifest(manifest: Path, options: dict) -> Dataset:
    rows = _manifest_rows(manifest)
    paths = [manifest_path(manifest.parent, r["path"]) for r in rows]
    outside = outside_folder(manifest.parent, paths)
    if outside:
        warn_input(outside_warning(manifest, outside))
    skipped = [(path_text(p), NOT_REGULAR) for p in paths if is_non_regular(p)]
    first: dict[str, int] = {}
    keep = []
    for i, (p, r) in enumerate(zip(paths, rows, strict=True)):
        if is_non_regular(p):  # never opened: a FIFO blocks, a device never ends
            continue
        key = _manifest_key(p)
        if key not in first:
            first[key] = i
            keep.append(i)
            continue
        j = first[key]
        if (r["label"], r["group"]) != (rows[j]["label"], rows[j]["group"]):
            raise AFMInputError(manifest, f"lines {j + 2} and {i + 2}: {r['path']} is listed twice with different "
                                          f"label/group ({rows[j]['label']}/{rows[j]['group']} vs "
                                          f"{r['label']}/{r['group']})")
        warn_input(f"{manifest}: line {i + 2}: {r['path']} is listed again (first on line {j + 2}); used once")
    rows, paths = [rows[i] for i in keep], [paths[i] for i in keep]
    labels, groups = _checked_labels(manifest, rows, lines=[f"line {i + 2}" for i in keep])
    splits = None
    if "split" in rows[0]:
        splits = [r.get("split", "").lower() or None for r in rows]
        for i, split in zip(keep, splits, strict=True):
            if split is not None and split not in SPLIT_NAMES:
                raise AFMInputError(manifest, f"line {i + 2}: split {split!r} is not one of {', '.join(SPLIT_NAMES)}")
    return Dataset(paths, labels, groups, splits, row_options=_row_options(manifest, rows), skipped=skipped,
                   **options)


def write_manifest(dataset: Dataset, path: str | Path) -> Path:
    """Write ``dataset`` as a CSV manifest with paths relative to the manifest's folder."""
    path = Path(path)
    frame = dataset.to_frame()
    root = path.parent.resolve()

    def rel(p: str) -> str:
        try:
            return Path(p).resolve().relative_to(root).as_posix()
        except ValueError:
            return str(Path(p).resolve())

    frame["path"] = [rel(p) for p in frame["path"]]
    atomic_write_csv(frame, path, index=False)
    return path


def sample_of_file(path: str | os.PathLike, pattern: str = DEFAULT_FILENAME_PATTERN) -> str:
    """The sample of a file found without a manifest: the ``group`` field of ``pattern`` matched
    against the file's name (:data:`DEFAULT_FILENAME_PATTERN`: ``<x>_<MATERIAL>_<x>_<SAMPLE>_...``),
    else the file itself (its path, so two scans of one name in other folders or formats are two
    samples)."""
    match = re.match(pattern, Path(path).name)
    return match.group("group") if match else os.fspath(path)


__all__ = [
    "DEFAULT_FILENAME_PATTERN",
    "MISSING_LABELS",
    "ROW_OPTIONS",
    "SPLIT_NAMES",
    "Dataset",
    "LoadReport",
    "load_dataset",
    "load_images",
    "sample_of_file",
    "write_manifest",
]

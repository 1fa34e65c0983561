"""Labelled, sample-grouped collections of AFM files: :class:`Dataset`, CSV manifests and the
file-name convention that labels a folder of files."""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._utils import atomic_write_csv, track
from ..errors import AFMInputError, AFMInputWarning, HybridTMDError
from .image import AFMImage, warn_input
from .readers import load_image, registered_suffix

#: Default file-name convention of the seed paper: underscore-separated fields
#: ``<anything>_<MATERIAL>_<anything>_<SAMPLEID>[_<more>...].<ext>``; a last field of
#: ``train``/``val``/``test`` is taken as the split. E.g. ``synthetic_WS2_2.0um_0012_img1.tif``.
DEFAULT_FILENAME_PATTERN = r"^[^_]+_(?P<label>[^_]+)_[^_]+_(?P<group>[^_.]+)(?:_[^.]*)?\.[A-Za-z0-9-]+$"
#: Split names recognised as the last underscore field of a file name.
SPLIT_NAMES = ("train", "val", "test")


@dataclass
class LoadReport:
    """What a batch load produced: the images that loaded and the files that did not."""

    images: list[AFMImage]
    indices: np.ndarray  # positions in the dataset of ``images``
    errors: list[tuple[str, str]]  # (file, reason) for every file that failed


@dataclass
class Dataset:
    """A labelled, sample-grouped list of AFM files; images are read lazily on access.

    ``groups`` are sample ids: every cross-validation in hybridtmd splits by them, so images of
    one sample are never in both train and test.
    """

    paths: list[Path]
    labels: np.ndarray
    groups: np.ndarray
    splits: np.ndarray | None = None
    pixel_size_nm: float | tuple[float, float] | None = None
    channel: str = "Height"
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.paths = [Path(p) for p in self.paths]
        self.labels = np.asarray(self.labels, dtype=object)
        self.groups = np.asarray(self.groups, dtype=object)
        if self.splits is not None:
            self.splits = np.asarray(self.splits, dtype=object)
        n = len(self.paths)
        if len(self.labels) != n or len(self.groups) != n or (self.splits is not None and len(self.splits) != n):
            raise ValueError("paths, labels, groups (and splits) must have the same length")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> AFMImage:
        return load_image(self.paths[index], pixel_size_nm=self.pixel_size_nm, channel=self.channel)

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
            pixel_size_nm=self.pixel_size_nm, channel=self.channel,
        )

    def first_per_class(self, n: int) -> Dataset:
        """The first ``n`` files of each class, classes in :attr:`classes` order (e.g. a gallery)."""
        return self.subset(i for cls in self.classes for i in np.flatnonzero(self.labels == cls)[:n])

    def to_frame(self):
        """The dataset as a pandas DataFrame (path, label, group[, split])."""
        import pandas as pd

        frame = pd.DataFrame({"path": [str(p) for p in self.paths], "label": self.labels, "group": self.groups})
        if self.splits is not None:
            frame["split"] = self.splits
        return frame

    def load(self, on_error: str = "skip", progress: bool = False) -> LoadReport:
        """Read every image. ``on_error="skip"`` collects bad files in ``report.errors``
        (file, reason) and keeps going; ``"raise"`` stops at the first one."""
        return load_images(self.paths, pixel_size_nm=self.pixel_size_nm, channel=self.channel,
                           on_error=on_error, progress=progress)

    def summary(self):
        """Images and samples per class, as a DataFrame."""
        frame = self.to_frame()
        return frame.groupby("label").agg(images=("path", "size"), samples=("group", "nunique"))


def load_images(
    paths: Iterable[str | Path],
    *,
    pixel_size_nm: float | Sequence[float] | None = None,
    channel: str = "Height",
    on_error: str = "skip",
    progress: bool = False,
) -> LoadReport:
    """Load many files, skipping (and reporting) the bad ones instead of stopping."""
    if on_error not in ("skip", "raise"):
        raise ValueError("on_error must be 'skip' or 'raise'")
    paths = [Path(p) for p in paths]
    images, indices, errors = [], [], []
    for i, p in track(enumerate(paths), total=len(paths), description="loading", show=progress):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("default", AFMInputWarning)
                images.append(load_image(p, pixel_size_nm=pixel_size_nm, channel=channel))
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
    channel: str = "Height",
    recursive: bool = False,
) -> Dataset:
    """Describe a labelled AFM dataset from a CSV manifest or a folder of files.

    Parameters
    ----------
    source : path
        A ``.csv`` manifest with columns ``path,label,group`` and optionally ``split``
        (paths relative to the manifest's folder), or a folder. A folder containing
        ``manifest.csv`` uses it; otherwise labels and groups are parsed from file names
        with ``pattern``.
    pattern : str
        Regular expression with named groups ``label`` and ``group`` (and optionally ``split``)
        matched against each file name. The default is the seed paper's convention,
        :data:`DEFAULT_FILENAME_PATTERN`: ``<anything>_<MATERIAL>_<anything>_<SAMPLEID>_...``.
        Files with a supported suffix that do not match are listed in ``Dataset.skipped``
        with a warning.
    """
    source = Path(source)
    if not source.exists():
        raise AFMInputError(source, "dataset path not found")
    if source.is_dir() and (source / "manifest.csv").exists():
        source = source / "manifest.csv"
    if source.is_file():
        return _dataset_from_manifest(source, pixel_size_nm=pixel_size_nm, channel=channel)
    regex = re.compile(pattern)
    if "label" not in regex.groupindex or "group" not in regex.groupindex:
        raise ValueError("pattern needs named groups 'label' and 'group'")
    return _dataset_from_names(source, regex, recursive=recursive, pixel_size_nm=pixel_size_nm, channel=channel)


def _dataset_from_names(folder: Path, regex: re.Pattern, *, recursive: bool, pixel_size_nm, channel) -> Dataset:
    """Labels, groups and splits parsed from the names of the readable files in ``folder``."""
    files = sorted(folder.rglob("*") if recursive else folder.iterdir())
    paths, labels, groups, splits, skipped = [], [], [], [], []
    for f in files:
        if not f.is_file() or f.name.startswith(".") or registered_suffix(f) is None:
            continue
        m = regex.match(f.name)
        if m is None:
            skipped.append((str(f), "file name does not match the dataset pattern"))
            continue
        paths.append(f)
        labels.append(m.group("label"))
        groups.append(m.group("group"))
        split = m.groupdict().get("split")
        last = f.stem.rsplit("_", 1)[-1].lower()
        splits.append(split or (last if last in SPLIT_NAMES else None))
    if skipped:
        warn_input(f"{folder}: {len(skipped)} file(s) do not match the name pattern and were skipped")
    if not paths:
        raise AFMInputError(folder, "no AFM files matching the dataset pattern")
    has_split = any(s is not None for s in splits)
    return Dataset(paths, labels, groups, splits if has_split else None, pixel_size_nm, channel, skipped)


def _manifest_rows(manifest: Path) -> list[dict[str, str]]:
    """The rows of a manifest CSV, checked for the columns and values every dataset needs."""
    try:
        with open(manifest, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AFMInputError(manifest, f"cannot read manifest ({exc})") from None
    if not rows:
        raise AFMInputError(manifest, "manifest has no rows")
    missing = {"path", "label", "group"} - set(rows[0])
    if missing:
        raise AFMInputError(manifest, f"manifest lacks column(s) {sorted(missing)}; needs path,label,group[,split]")
    for i, r in enumerate(rows, start=2):
        if not r["label"] or not r["group"]:
            raise AFMInputError(manifest, f"line {i}: empty label or group")
    return rows


def _dataset_from_manifest(manifest: Path, *, pixel_size_nm, channel) -> Dataset:
    rows = _manifest_rows(manifest)
    base = manifest.parent
    paths = [base / r["path"] if not Path(r["path"]).is_absolute() else Path(r["path"]) for r in rows]
    first: dict[Path, int] = {}
    for i, (p, r) in enumerate(zip(paths, rows, strict=True)):
        key = p.resolve()
        if key not in first:
            first[key] = i
            continue
        j = first[key]
        if (r["label"], r["group"]) != (rows[j]["label"], rows[j]["group"]):
            raise AFMInputError(manifest, f"lines {j + 2} and {i + 2}: {r['path']} is listed twice with different "
                                          f"label/group ({rows[j]['label']}/{rows[j]['group']} vs "
                                          f"{r['label']}/{r['group']})")
        warn_input(f"{manifest}: line {i + 2}: {r['path']} is listed again (first on line {j + 2}); it is used twice")
    splits = [r.get("split") or None for r in rows] if "split" in rows[0] else None
    return Dataset(
        paths, [r["label"] for r in rows], [r["group"] for r in rows], splits,
        pixel_size_nm=pixel_size_nm, channel=channel,
    )


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


__all__ = [
    "DEFAULT_FILENAME_PATTERN",
    "SPLIT_NAMES",
    "Dataset",
    "LoadReport",
    "load_dataset",
    "load_images",
    "write_manifest",
]

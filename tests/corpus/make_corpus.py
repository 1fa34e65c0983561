"""Generate the bad/odd-input corpus of issue 9 (no binary is committed: every file is written here).

Usage::

    python tests/corpus/make_corpus.py OUTDIR [--huge]

Tests import :func:`make_corpus` (and :func:`make_huge_tiff`) and write into ``tmp_path``.

Each :class:`Case` is one file (or a list of paths for the duplicate case) with the outcome that
:func:`hybridtmd.io.load_image` must give:

* ``"ok"``    - loads cleanly (no warning);
* ``"warn"``  - loads, with an :class:`~hybridtmd.errors.AFMInputWarning` matching ``match``;
* ``"error"`` - one :class:`~hybridtmd.errors.AFMInputError` whose message names the file and
  matches ``match`` (the reason).

File names follow the paper's convention ``corpus_<LABEL>_<where>_<SAMPLE>_<case>.<ext>`` so a
corpus folder is also a labelled dataset for the batch commands (``extract``, ``embed``,
``predict``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

GOOD_SIDE = 64
PIXEL_NM = 8.0


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    expect: str  # "ok" | "warn" | "error"
    match: str  # regex the warning/error message must match ("" for ok)
    kwargs: dict[str, Any] = field(default_factory=dict)  # load_image keyword arguments
    note: str = ""


def surface(side_rows: int = GOOD_SIDE, side_cols: int | None = None, seed: int = 0) -> np.ndarray:
    """A rough surface with domains and a tilt, heights ~ nm (float64)."""
    cols = side_rows if side_cols is None else side_cols
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side_rows, 0:cols]
    h = 0.3 * np.sin(x / 5.0 + seed) * np.cos(y / 7.0) + rng.normal(0, 0.1, (side_rows, cols))
    h[side_rows // 4 : side_rows // 2, cols // 4 : cols // 2] += 0.7  # one raised domain
    return h + 0.002 * x


def _tiff(path: Path, data: np.ndarray, pixel_nm: Any = PIXEL_NM, **extra: Any) -> Path:
    """A TIFF with hybridtmd's JSON description (pixel size, z unit) unless pixel_nm is None."""
    import tifffile

    metadata: dict[str, Any] | None = None
    if pixel_nm is not None:
        px = list(pixel_nm) if isinstance(pixel_nm, (list, tuple)) else [pixel_nm, pixel_nm]
        metadata = {"pixel_size_nm": px, "z_unit": "nm", **extra}
    tifffile.imwrite(path, data, metadata=metadata, photometric="minisblack")  # a 3-D stack is pages, not RGB
    return path


def _name(label: str, sample: str, case: str, ext: str) -> str:
    return f"corpus_{label}_c_{sample}_{case}{ext}"


def make_good(directory: str | Path, n: int = 4, labels: tuple[str, ...] = ("MoS2", "WSe2")) -> list[Path]:
    """``n`` valid float32 TIFFs (64x64, 8 nm pixels), labels alternating, one sample each."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        label = labels[i % len(labels)]
        path = directory / _name(label, f"g{i}", "good", ".tif")
        out.append(_tiff(path, surface(seed=i).astype(np.float32)))
    return out


def make_corpus(directory: str | Path) -> dict[str, Case]:
    """Write every small corpus file into ``directory``; return the cases by name."""
    from PIL import Image

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    good = surface()
    cases: list[Case] = []

    def add(case: str, ext: str, expect: str, match: str, kwargs: dict | None = None, note: str = "") -> Path:
        path = d / _name("MoS2", case.replace("_", ""), case, ext)
        cases.append(Case(case, path, expect, match, kwargs or {}, note))
        return path

    # --- files that are not (whole) images
    full = _tiff(d / "_full.tmp.tif", good.astype(np.float32)).read_bytes()
    (d / "_full.tmp.tif").unlink()
    add("truncated_tiff", ".tif", "error", r"cannot read \.tif file",
        note="a valid TIFF cut to 60 % of its bytes").write_bytes(full[: int(len(full) * 0.6)])
    add("zero_byte", ".tif", "error", r"file is empty \(0 bytes\)").write_bytes(b"")
    add("wrong_extension", ".dat", "error", r"unsupported file type '\.dat'",
        note="a valid TIFF named .dat").write_bytes(full)
    add("tiff_named_npy", ".npy", "error", r"not a \.npy file",
        kwargs={"pixel_size_nm": PIXEL_NM}, note="a valid TIFF named .npy").write_bytes(full)
    add("text_as_npz", ".npz", "error", r"not a \.npz \(zip\) file",
        kwargs={"pixel_size_nm": PIXEL_NM}).write_text("height\n1 2 3\n")
    add("text_as_tif", ".tif", "error", r"cannot read \.tif file").write_text("height,x,y\n1,2,3\n" * 20)

    # --- non-finite and degenerate heights
    _tiff(add("nan_filled", ".tif", "error", r"100\.0% of pixels are NaN/inf"), np.full((64, 64), np.nan, np.float32))
    inf = good.astype(np.float32)
    inf[::2] = np.inf
    _tiff(add("inf_filled", ".tif", "error", r"50\.0% of pixels are NaN/inf"), inf)
    few = good.copy()
    few[10, 10:14] = np.nan
    few[40, 5] = -np.inf
    _tiff(add("few_nan", ".tif", "warn", r"filled 5 NaN/inf pixels", note="under 5 %: interpolated"), few)
    _tiff(add("all_constant", ".tif", "error", r"image is constant"), np.full((64, 64), 3.5, np.float32))

    # --- shapes
    _tiff(add("tiny_8x8", ".tif", "error", r"image is 8x8 px; at least 32"), good[:8, :8].astype(np.float32))
    _tiff(add("line_1x4096", ".tif", "error", r"at least 32 px per side",
              note="a single line is squeezed to 1-D and rejected"),
          surface(1, 4096).astype(np.float32))
    _tiff(add("stack_3d", ".tif", "error", r"TIFF has 3 pages .*pass channel=<page index 0..2>"),
          np.stack([surface(seed=s) for s in range(3)]).astype(np.float32))

    # --- rasters and integer / half-precision TIFFs
    rgb = np.stack([(good - good.min()) / np.ptp(good) * 255] * 3, axis=-1).astype(np.uint8)
    rgb[..., 0] //= 2  # not grey
    Image.fromarray(rgb, "RGB").save(add("rgb_png", ".png", "warn", r"RGB image converted to grey",
                                         kwargs={"pixel_size_nm": PIXEL_NM, "z_scale": 0.01}))
    Image.fromarray(rgb, "RGB").save(add("rgb_png_no_scale", ".png", "error", r"pass z_scale",
                                         kwargs={"pixel_size_nm": PIXEL_NM},
                                         note="grey levels have no unit without z_scale"))
    u16 = ((good - good.min()) / np.ptp(good) * 60000).astype(np.uint16)
    _tiff(add("uint16_tiff", ".tif", "warn", r"integer heights without a z scale are taken as nm",
              kwargs={"pixel_size_nm": PIXEL_NM}), u16, pixel_nm=None)
    _tiff(add("uint16_tiff_scaled", ".tif", "ok", "", kwargs={"pixel_size_nm": PIXEL_NM, "z_scale": 1e-4}),
          u16, pixel_nm=None)
    _tiff(add("float16_tiff", ".tif", "ok", ""), good.astype(np.float16))

    # --- pixel size
    _tiff(add("negative_pixel_in_file", ".tif", "error", r"pixel size must be one or two positive numbers"),
          good.astype(np.float32), pixel_nm=[-8.0, 8.0])
    _tiff(add("negative_pixel_argument", ".tif", "error", r"pixel size must be one or two positive numbers",
              kwargs={"pixel_size_nm": -2.0}), good.astype(np.float32))
    _tiff(add("no_pixel_size", ".tif", "error", r"no pixel size in the file"), good.astype(np.float32), pixel_nm=None)

    # --- values and units no AFM writes (issue 32: 1e300 is finite in float64, inf in float32)
    _tiff(add("heights_1e300", ".tif", "error", r"values up to 1\.\d+e\+300 nm \(limit 1e\+12 nm"),
          good * 1e300)
    _tiff(add("z_unit_parsec", ".tif", "error", r"z unit 'parsec' is a length no AFM height is stored in"),
          good.astype(np.float32), z_unit="parsec")
    add("gwyddion_1x", ".gwy", "error", r"Gwyddion 1\.x file \('GWYO' signature\)").write_bytes(b"GWYO" + bytes(200))

    # --- odd but fine
    _tiff(add("non_square", ".tif", "ok", ""), surface(40, 200).astype(np.float32))
    _tiff(add("metre_heights", ".tif", "ok", "", note="z_unit m in the description: converted to nm"),
          good * 1e-9, z_unit="m")
    return {c.name: c for c in cases}


def make_huge_tiff(directory: str | Path, side: int = 8192, block_rows: int = 512) -> Path:
    """An uncompressed ``side`` x ``side`` float32 TIFF (256 MiB at 8192) written block by block
    through a memory map, so generating it never holds the whole image in memory."""
    import tifffile

    path = Path(directory) / _name("MoS2", "huge", f"huge{side}", ".tif")
    out = tifffile.memmap(path, shape=(side, side), dtype=np.float32,
                          metadata={"pixel_size_nm": [1.0, 1.0], "z_unit": "nm"})
    cols = np.arange(side, dtype=np.float32)
    for start in range(0, side, block_rows):
        rows = np.arange(start, min(start + block_rows, side), dtype=np.float32)[:, None]
        out[start : start + len(rows)] = np.sin(cols / 37.0) * np.cos(rows / 23.0) + 1e-4 * cols
    out.flush()
    del out
    return path


def main() -> None:  # pragma: no cover - command line
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--huge", action="store_true", help="also write the 8192x8192 float32 TIFF (256 MiB)")
    args = parser.parse_args()
    cases = make_corpus(args.outdir)
    make_good(args.outdir)
    if args.huge:
        make_huge_tiff(args.outdir)
    print(json.dumps({name: {"file": c.path.name, "expect": c.expect, "match": c.match} for name, c in cases.items()},
                     indent=1))


if __name__ == "__main__":  # pragma: no cover
    main()

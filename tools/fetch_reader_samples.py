"""Fetch the instrument sample files of AFMReader's own test suite for hybridtmd's reader tests.

AFMReader (TopoStats project, LGPL-3.0; https://github.com/AFM-SPM/AFMReader) ships real scans
from several vendors in ``tests/resources/`` of its source distribution on PyPI: JPK ``.jpk``,
WSxM ``.stp``/``.top``, Bruker ``.spm``, Asylum ``.ibw``, Gwyddion ``.gwy``, JPK ``.h5-jpk``,
high-speed AFM ``.asd`` and TopoStats ``.topostats``. They are too large (about 100 MB) and
under another licence, so they are not in the repository: this script downloads the pinned
sdist with pip (``pip download --no-deps --no-binary :all:``) into a cache, checks its SHA-256,
and extracts only the sample files, each checked against its SHA-256, into the folder the tests
read (``tests/fixtures/vendor_samples/``, git-ignored; ``HYBRIDTMD_SAMPLE_FILES`` or ``--dest``
name another).

    python tools/fetch_reader_samples.py             # exit 1 with one line when it cannot
    python tools/fetch_reader_samples.py --optional  # exit 0 anyway (make test's bootstrap)

The tests that use the files (tests/test_sample_files.py) skip when the folder is absent.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

AFMREADER_VERSION = "0.0.7"
SDIST_NAME = f"afmreader-{AFMREADER_VERSION}.tar.gz"
SDIST_SHA256 = "44b40cf188e054915f8b71ec62eee643fe372c4062d77ab548382ae39c01ff1d"
RESOURCES = f"afmreader-{AFMREADER_VERSION}/tests/resources/"

#: The sample files taken, with their SHA-256 (from the sdist above).
SAMPLE_FILES = {
    "sample_0.jpk": "7b1945c97936f005446b2d75be49643a364ecaf8798a2d2b97b092d40f21de2e",
    "sample_0.stp": "977569f7fdbdc5de92fd8b2172c9ff8fd38f3b8df6de0b4f95a547a8b12da8c5",
    "sample_0.top": "861bc8ab110d9cb820971b23df77fffa1e746fe81464890e5f8787e2e291b174",
    "sample_1_um_scale.stp": "a7f91b61b218d2899e7d20ca602aaa1c87b5035e9e8a6cd2ecb84a997ec59f0c",
    "sample_1_um_scale.top": "dbb67150ea952cc74866365bfd7aa77a0b15410643a2508ab00d0461bfbbba63",
    "sample_0.spm": "d662c5a4f18c8dc73572f33c3c999259ca1e1e5cc52d0e96d5d8af49ba1b63d5",
    "sample_0.ibw": "84a7fad6032cc735fef6db2781c1d74d385f25b9ead4c3561f50560943233985",
    "sample_0.gwy": "5b959fba2ba5da8daf5b3336b9cee5ea60d3285c47cf58b036ceae79b98255eb",
    "sample_0.h5-jpk": "b8bc4efcbbd3678987c2317852351c22c58b7a1fb2cc800ce55d23b51e7f73ca",
    "sample_1.asd": "46e192a8bc85b60578dca4eb2c26e6685e1158f9c112316660d389527a6dffa0",
    "sample_0_1.topostats": "e6eba0c93c4e0928aa8c89d7e0f70bac6fe25baecfd7446ead6f577635303ad9",
    "sample_0_2.topostats": "24c1eff56ea9051699d618aec3be08f1607dcc9854624886c25e4cf23eb54185",
}

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DEST = REPO / "tests" / "fixtures" / "vendor_samples"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_cache() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "hybridtmd" / "sdists"


def missing_files(dest: Path) -> list[str]:
    """The sample files absent from ``dest`` or with another content."""
    return [name for name, digest in SAMPLE_FILES.items()
            if not (dest / name).is_file() or sha256(dest / name) != digest]


def download_sdist(cache: Path, timeout_s: float) -> Path:
    """The pinned AFMReader sdist from the package index (kept in ``cache``), SHA-256 checked."""
    target = cache / SDIST_NAME
    if not (target.is_file() and sha256(target) == SDIST_SHA256):
        cache.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                   f"AFMReader=={AFMREADER_VERSION}", "-d", str(cache)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"pip download of AFMReader {AFMREADER_VERSION} took over {timeout_s:g} s") from None
        if done.returncode != 0 or not target.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"pip download of AFMReader {AFMREADER_VERSION} failed: {last}")
    if sha256(target) != SDIST_SHA256:
        raise RuntimeError(f"{target}: SHA-256 is not the pinned {SDIST_SHA256}")
    return target


def extract(sdist: Path, dest: Path, names: list[str]) -> None:
    """Only the named sample files, checked, written atomically into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist, "r:gz") as archive:
        for name in names:
            member = archive.getmember(RESOURCES + name)
            if not member.isfile():
                raise RuntimeError(f"{sdist}: {member.name} is not a regular file")
            source = archive.extractfile(member)
            assert source is not None
            with tempfile.NamedTemporaryFile(dir=dest, prefix=f".{name}.", delete=False) as out:
                shutil.copyfileobj(source, out, 1 << 20)
            part = Path(out.name)
            part.chmod(0o644)
            if sha256(part) != SAMPLE_FILES[name]:
                part.unlink()
                raise RuntimeError(f"{sdist}: {name} does not have its pinned SHA-256")
            part.replace(dest / name)
    (dest / "PROVENANCE.md").write_text(
        f"Taken unchanged from `{RESOURCES}` of the AFMReader {AFMREADER_VERSION} source distribution on PyPI\n"
        f"(`{SDIST_NAME}`, SHA-256 {SDIST_SHA256}; https://github.com/AFM-SPM/AFMReader, LGPL-3.0) by\n"
        "`tools/fetch_reader_samples.py`. Not part of hybridtmd; do not commit.\n", encoding="utf-8")


def fetch(dest: Path, cache: Path, timeout_s: float = 300.0) -> list[str]:
    """Make ``dest`` hold every sample file; returns the names that were extracted."""
    names = missing_files(dest)
    if names:
        extract(download_sdist(cache, timeout_s), dest, names)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path(os.environ.get("HYBRIDTMD_SAMPLE_FILES") or DEFAULT_DEST))
    parser.add_argument("--cache", type=Path, default=default_cache())
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds pip may take")
    parser.add_argument("--optional", action="store_true", help="exit 0 when the files cannot be obtained")
    args = parser.parse_args(argv)
    try:
        names = fetch(args.dest, args.cache, args.timeout)
    except (OSError, RuntimeError, tarfile.TarError, KeyError) as exc:
        print(f"reader sample files not fetched ({exc}); tests/test_sample_files.py will skip", file=sys.stderr)
        return 0 if args.optional else 1
    print(f"{args.dest}: {len(SAMPLE_FILES)} AFMReader sample files" + (f" ({len(names)} extracted)" if names else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

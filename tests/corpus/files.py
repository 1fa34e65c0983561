"""Where the tests find real instrument files, and how they read a batch command's report.

Real files are never copied into the repository: ``../shared/data/afm_files`` (the lab's scans,
README beside them) and AFMReader's sample files (``make samples``, or a folder named by
``HYBRIDTMD_SAMPLE_FILES``). Tests that need them skip when these return None.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]


def shared_afm_files() -> Path | None:
    """``../shared/data/afm_files`` beside the repository (or /work/shared), None when absent."""
    for root in (Path("/work/shared"), _TESTS.parents[1] / "shared", _TESTS.parent / "shared"):
        folder = root / "data" / "afm_files"
        if folder.is_dir():
            return folder
    return None


def sample_files_folder() -> Path | None:
    """The folder of AFMReader's sample files (``HYBRIDTMD_SAMPLE_FILES`` or the git-ignored
    tests/fixtures/vendor_samples), None when absent or empty."""
    named = os.environ.get("HYBRIDTMD_SAMPLE_FILES")
    folder = Path(named) if named else _TESTS / "fixtures" / "vendor_samples"
    return folder if folder.is_dir() and any(folder.iterdir()) else None


def skipped_reasons(output: str) -> dict[str, str]:
    """file name -> reason, from the ``skipped <file>: <reason>`` lines of a batch command."""
    found = {}
    for line in output.splitlines():
        m = re.match(r"\s+skipped (\S+): (.+)$", line)
        if m:
            found[m.group(1).rsplit("/", 1)[-1]] = m.group(2)
    return found

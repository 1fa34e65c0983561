"""Tampering as a forger who read the source would do it: edit a saved model's manifest and
recompute its directory digest, so that the checks behind the digest are tested too (an edit
without the new digest is caught by the digest itself: tests/corpus/test_model_hardening.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hybridtmd.model.persistence import manifest_digest


def write_forged(directory: Path, manifest: dict[str, Any], key: bytes | None = None) -> dict[str, Any]:
    """Write ``manifest`` into ``directory`` with its digest recomputed (signed with ``key``)."""
    manifest["directory_digest"] = manifest_digest(manifest, key)
    (Path(directory) / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def forge_manifest(directory: Path, key: bytes | None = None, **changes: Any) -> dict[str, Any]:
    """Update the saved manifest's entries with ``changes`` and write it back, forged."""
    manifest = json.loads((Path(directory) / "manifest.json").read_text())
    manifest.update(changes)
    return write_forged(directory, manifest, key)

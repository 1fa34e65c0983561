"""Channel names of Asylum Research ``.ibw`` files (Igor binary waves) as the file writes them.

Igor stores each dimension label as a NUL-terminated C string in a 32-byte field; a field reused
for a shorter name keeps the old name's tail after the NUL (``HeightTrace\\0e``). igor2, which
SurfaceTopography reads these files with, drops the NUL bytes instead of ending the name there,
so such names come out mangled (``HeightTracee``, ``PhaseRetracerace``) and no longer match the
channel aliases. :func:`ibw_label_names` reads the labels from the header (Igor Technical Note
TN003, version-5 waves: the only version with dimension labels) so the reader can name each
channel as the file does.
"""

from __future__ import annotations

import struct
from pathlib import Path

#: Bytes of the version-5 binary header and wave header (TN003).
_BIN_HEADER_5 = 64
_WAVE_HEADER_5 = 320
_LABEL_FIELD = 32
#: Label bytes read per dimension at most (a damaged header may declare gigabytes).
_MAX_LABEL_BYTES = _LABEL_FIELD * 4096


def _labels(block: bytes) -> list[tuple[str, str]]:
    """(name as written, name as igor2 reads it) of each label of one dimension: fields are
    joined until one holds a NUL (labels longer than a field span several)."""
    out, written, mangled, ended = [], b"", b"", False
    for start in range(0, len(block) - _LABEL_FIELD + 1, _LABEL_FIELD):
        field = block[start:start + _LABEL_FIELD]
        if not ended:
            written += field.split(b"\0", 1)[0]
        ended = ended or b"\0" in field
        mangled += field.replace(b"\0", b"")
        if b"\0" in field:
            out.append((written.decode("latin-1"), mangled.decode("latin-1")))
            written, mangled, ended = b"", b"", False
    return out


def ibw_label_names(path: Path) -> dict[str, str]:
    """``{name as igor2 reads it: name as the file writes it}`` for every dimension label whose
    two readings differ; empty for files without labels, of another version or cut short."""
    with open(path, "rb") as fh:
        header = fh.read(_BIN_HEADER_5)
        if len(header) < _BIN_HEADER_5:
            return {}
        order = "<" if struct.unpack("<h", header[:2])[0] == 5 else ">"
        fields = struct.unpack(order + "hhiiii4i4iiii", header)
        if fields[0] != 5:
            return {}
        wfm_size, formula_size, note_size, units_size = fields[2:6]
        dim_units, dim_labels = fields[6:10], fields[10:14]
        if min(wfm_size, formula_size, note_size, units_size, *dim_units, *dim_labels) < 0 or wfm_size < _WAVE_HEADER_5:
            return {}
        fh.seek(_BIN_HEADER_5 + wfm_size + formula_size + note_size + units_size + sum(dim_units))
        blocks = [fh.read(min(size, _MAX_LABEL_BYTES)) for size in dim_labels]
    return {mangled: written for block in blocks for written, mangled in _labels(block) if written != mangled}


__all__ = ["ibw_label_names"]

"""Checks that a container file is whole before a third-party parser sees it.

Some parsers stop quietly where a truncated file ends and return what they read so far: gwyfile
returns the data fields before the cut, tifffile (and SurfaceTopography's JPK and Park readers,
built on it) the pages before the first image directory past the end. The file then loads with
fewer channels, and its default channel may silently be another one. These checks compare what
the file's own header declares with its size, from a few bytes, and refuse a truncated file.

TIFF layout: TIFF 6.0 specification (Adobe, 1992), section 2; BigTIFF: the AWare Systems
BigTIFF design notes. Gwyddion layout: the Gwyddion user guide, "Gwyddion native file format"
(a ``GWYP`` magic, then the top ``GwyContainer`` object: NUL-terminated name, uint32
little-endian size of its data, the data).
"""

from __future__ import annotations

import struct
from pathlib import Path

from ..errors import AFMInputError

#: Most image directories followed in one TIFF (a loop or a corrupt chain stops there).
MAX_TIFF_DIRECTORIES = 1_000_000


#: Bytes per value of each TIFF field type (TIFF 6.0 section 2; 16-18 are BigTIFF's 8-byte types).
TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
                   16: 8, 17: 8, 18: 8}


def _tiff_layout(head: bytes) -> tuple[str, str, str, int] | None:
    """(byte order, count format, offset format, first directory offset), None when not TIFF."""
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or len(head) < 8:
        return None
    version = struct.unpack(order + "H", head[2:4])[0]
    if version == 42:
        return order, "H", "I", struct.unpack(order + "I", head[4:8])[0]
    if version == 43 and len(head) >= 16:
        return order, "Q", "Q", struct.unpack(order + "Q", head[8:16])[0]
    return None


def _value_past_end(entries: bytes, order: str, offset_fmt: str, size: int) -> tuple[int, int] | None:
    """(tag, end byte) of the first directory entry whose out-of-line value lies past ``size``."""
    offset_size = struct.calcsize(offset_fmt)
    entry_fmt = order + "HH" + offset_fmt + offset_fmt
    for tag, kind, count, value in struct.iter_unpack(entry_fmt, entries):
        length = count * TIFF_TYPE_SIZES.get(kind, 1)
        if length > offset_size and value + length > size:
            return tag, value + length
    return None


def check_tiff_complete(path: Path) -> None:
    """Refuse a TIFF (classic or BigTIFF) cut short: an image directory, or a tag value stored
    outside its directory, that lies past the end of the file. Files that are not TIFF are left
    to the parser to refuse; pixel data past the end is the parser's to find when it reads."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        layout = _tiff_layout(fh.read(16))
        if layout is None:
            return
        order, count_fmt, offset_fmt, offset = layout
        count_size, offset_size = struct.calcsize(count_fmt), struct.calcsize(offset_fmt)
        entry_size = 4 + 2 * offset_size
        seen: set[int] = set()
        while offset and len(seen) < MAX_TIFF_DIRECTORIES:
            if offset in seen:
                raise AFMInputError(path, f"TIFF image directories form a loop (at byte {offset:,})")
            seen.add(offset)
            fh.seek(offset)
            counted = fh.read(count_size)
            n_entries = struct.unpack(order + count_fmt, counted)[0] if len(counted) == count_size else 0
            end = offset + count_size + n_entries * entry_size + offset_size
            if len(counted) < count_size or end > size:
                raise AFMInputError(path, f"TIFF is truncated: image directory {len(seen)} (bytes {offset:,}-{end:,}) "
                                          f"lies past the end of the file ({size:,} bytes)")
            past = _value_past_end(fh.read(n_entries * entry_size), order, offset_fmt, size)
            if past is not None:
                raise AFMInputError(path, f"TIFF is truncated: tag {past[0]} of image directory {len(seen)} ends at "
                                          f"byte {past[1]:,}, past the end of the file ({size:,} bytes)")
            offset = struct.unpack(order + offset_fmt, fh.read(offset_size))[0]


def check_gwy_complete(path: Path) -> None:
    """Refuse a Gwyddion file that is not one (no ``GWYP`` magic) or is shorter than its top
    container declares."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4 + 256)
    if head.startswith(b"GWYO"):  # Gwyddion 1.x wrote this older serialisation
        raise AFMInputError(path, "Gwyddion 1.x file ('GWYO' signature): that old format is not supported; "
                                  "open and save it again in Gwyddion 2 (the 'GWYP' format)")
    if not head.startswith(b"GWYP"):
        raise AFMInputError(path, "not a Gwyddion file (its first bytes are not the 'GWYP' signature)")
    name_end = head.find(b"\0", 4)
    if name_end < 0 or name_end + 5 > len(head):
        raise AFMInputError(path, "Gwyddion file is cut short inside its header")
    declared = name_end + 5 + struct.unpack("<I", head[name_end + 1:name_end + 5])[0]
    if size < declared:
        raise AFMInputError(path, f"Gwyddion file is truncated: {size:,} of the {declared:,} bytes its header declares")


__all__ = ["MAX_TIFF_DIRECTORIES", "TIFF_TYPE_SIZES", "check_gwy_complete", "check_tiff_complete"]

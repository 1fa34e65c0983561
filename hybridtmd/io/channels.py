"""Channel names across vendors: one canonical name per signal, the scan direction, and the one
rule that picks the topography channel of a file.

Instruments name the same signal differently (Bruker ``Height Sensor`` / ``ZSensor``, Nanosurf
``Scan forward (Z-AxisSensor)``, JPK ``measuredHeight_trace``, Asylum ``ZSensorRetrace``). The
alias table below maps each to one canonical name (``height_sensor``), so that channels of files
from different vendors line up by name (multichannel descriptors rely on it).

Default channel rule (every format)
-----------------------------------
Among the channels whose canonical name is ``height`` (the feedback height / topography:
``Height``, ``Topography``, ``Z-Axis``, ``Z Height``...) or ``height_sensor`` (the closed-loop Z
sensor), and whose values are lengths:

1. ``height`` before ``height_sensor`` (the topography channel every AFM program shows first);
2. trace / forward before retrace / backward, and those before channels of unknown direction (a
   channel that names no direction is the trace when a channel of its canonical name is the
   retrace, :func:`implied_directions`);
3. the first in file order.

A file with none of these uses its first channel in a length unit; a file without any length
channel has no default (pass ``channel=``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

#: Canonical name of each signal, keyed by the vendor name folded to lower-case letters and digits
#: (direction words removed). Documented in docs/reading-files.md ("Channels").
CHANNEL_ALIASES: dict[str, str] = {
    **dict.fromkeys(("height", "topography", "topo", "zheight", "z", "zaxis", "heighttrace", "zdrive",
                     "tp"), "height"),
    **dict.fromkeys(("heightsensor", "zsensor", "zaxissensor", "measuredheight", "zsens", "zsensorheight",
                     "heightmeasured", "capacitivesensorheight"), "height_sensor"),
    **dict.fromkeys(("amplitude", "mag", "magnitude", "amplitudesignal"), "amplitude"),
    **dict.fromkeys(("amplitudeerror", "errorsignal", "error"), "amplitude_error"),
    **dict.fromkeys(("phase", "phasesignal"), "phase"),
    **dict.fromkeys(("deflection", "vdeflection", "verticaldeflection", "deflectionerror"), "deflection"),
    **dict.fromkeys(("friction", "lateral", "lateraldeflection", "lateralforce", "lfm", "hdeflection"), "friction"),
    **dict.fromkeys(("adhesion",), "adhesion"),
    **dict.fromkeys(("dmtmodulus", "modulus", "youngsmodulus", "elasticmodulus"), "modulus"),
    **dict.fromkeys(("logdmtmodulus", "logmodulus"), "log_modulus"),
    **dict.fromkeys(("deformation",), "deformation"),
    **dict.fromkeys(("dissipation",), "dissipation"),
    **dict.fromkeys(("peakforceerror",), "peak_force_error"),
    **dict.fromkeys(("current", "tunnelingcurrent", "tunnelcurrent", "tipcurrent", "it"), "current"),
    **dict.fromkeys(("potential", "surfacepotential", "kpfm", "cpd"), "surface_potential"),
}

#: Canonical names of the height channels, in the default rule's order of preference.
HEIGHT_CHANNELS = ("height", "height_sensor")

_FORWARD = ("trace", "forward", "fwd")
_BACKWARD = ("retrace", "backward", "bwd")
_DIRECTION_WORDS = re.compile(r"(retrace|trace|forward|backward|fwd|bwd|scan)", re.IGNORECASE)


def channel_direction(name: str, hint: str | None = None) -> str | None:
    """``"trace"`` (trace / forward), ``"retrace"`` (retrace / backward) or None, from the
    channel name or from ``hint`` (a header's line-direction entry)."""
    for text in (name, hint or ""):
        lower = text.lower()
        if any(word in lower for word in _BACKWARD):
            return "retrace"
        if any(word in lower for word in _FORWARD):
            return "trace"
    return None


def canonical_channel(name: str) -> str:
    """The canonical name of a vendor channel name (``"Scan forward (Z-AxisSensor)"`` ->
    ``"height_sensor"``); names outside :data:`CHANNEL_ALIASES` become lower-case snake case."""
    core = _DIRECTION_WORDS.sub(" ", str(name))
    key = re.sub(r"[^a-z0-9]", "", core.lower())
    if key in CHANNEL_ALIASES:
        return CHANNEL_ALIASES[key]
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", core.strip())
    snake = re.sub(r"[^a-z0-9]+", "_", snake.lower()).strip("_")
    return snake or "channel"


@dataclass(frozen=True)
class ChannelSpec:
    """One channel of a file as its reader declares it, before any data is read.

    ``unit`` is the unit of the values (a length such as ``nm``/``m`` for heights, ``V``, ``deg``...;
    None when the file does not say); ``pixels`` is (rows, cols); ``scan_size_nm`` is
    (width along x, height along y) in nm, None when the file does not say.
    """

    index: int
    name: str
    unit: str | None = None
    pixels: tuple[int, int] | None = None
    scan_size_nm: tuple[float, float] | None = None
    direction: str | None = None
    is_length: bool = True

    @property
    def canonical(self) -> str:
        return canonical_channel(self.name)


def implied_directions(channels: Sequence[ChannelSpec]) -> list[ChannelSpec]:
    """The channels with the direction a name without one implies: a channel that names no
    direction while a channel of the same canonical name is the retrace is the trace (JPK files
    read by SurfaceTopography name them ``Height`` and ``Height (retrace)``)."""
    retraced = {c.canonical for c in channels if c.direction == "retrace"}
    return [replace(c, direction="trace") if c.direction is None and c.canonical in retraced else c
            for c in channels]


def default_channel(channels: Sequence[ChannelSpec]) -> ChannelSpec | None:
    """The topography channel by the module's documented rule, or None when no channel is a length."""
    rank_direction = {"trace": 0, "retrace": 1, None: 2}
    heights = [c for c in channels if c.is_length and c.canonical in HEIGHT_CHANNELS]
    if heights:
        return min(heights, key=lambda c: (HEIGHT_CHANNELS.index(c.canonical), rank_direction[c.direction], c.index))
    lengths = [c for c in channels if c.is_length]
    return lengths[0] if lengths else None


def channel_keys(channels: Sequence[ChannelSpec]) -> list[str]:
    """A unique key per channel: its canonical name; channels sharing one are told apart by
    direction (``phase`` and ``phase_retrace``), then by a counter (``friction``, ``friction_2``).
    The trace/forward channel (or the first) keeps the bare name."""
    order = sorted(range(len(channels)), key=lambda i: (channels[i].direction == "retrace", i))
    keys: dict[int, str] = {}
    taken: set[str] = set()
    for i in order:
        base = channels[i].canonical
        key = base if base not in taken else f"{base}_retrace" if channels[i].direction == "retrace" else base
        n = 2
        while key in taken:
            key, n = f"{base}_{n}", n + 1
        taken.add(key)
        keys[i] = key
    return [keys[i] for i in range(len(channels))]


def resolve_channel(channels: Sequence[ChannelSpec], channel: str | int | None) -> ChannelSpec:
    """The channel asked for by index, exact name, canonical key or canonical name (case-insensitive),
    or the default channel; ValueError naming the channels otherwise."""
    listing = ", ".join(f"{c.index}: {c.name}" for c in channels)
    if channel is None:
        found = default_channel(channels)
        if found is None:
            raise ValueError(f"no height channel (no channel in a length unit); pass a channel: {listing}")
        return found
    if isinstance(channel, int) or (isinstance(channel, str) and channel.strip().isdigit()):
        index = int(channel)
        if not 0 <= index < len(channels):
            raise ValueError(f"channel index {index} out of range; channels are {listing}")
        return channels[index]
    wanted = str(channel).strip()
    keys = channel_keys(channels)
    for match in (
        lambda c, k: c.name == wanted,
        lambda c, k: c.name.lower() == wanted.lower() or k == wanted.lower(),
        lambda c, k: c.canonical == canonical_channel(wanted),
    ):
        hits = [c for c, k in zip(channels, keys, strict=True) if match(c, k)]
        if hits:
            return default_channel(hits) or hits[0]
    raise ValueError(f"channel {wanted!r} not found; channels are {listing}")


__all__ = [
    "CHANNEL_ALIASES",
    "HEIGHT_CHANNELS",
    "ChannelSpec",
    "canonical_channel",
    "channel_direction",
    "channel_keys",
    "default_channel",
    "implied_directions",
    "resolve_channel",
]

"""What a reader returns (:class:`RawImage`) before :func:`~hybridtmd.io.load_image` validates it
and converts it to nanometres."""

from __future__ import annotations

from typing import Any, NamedTuple


class RawImage(NamedTuple):
    """What a reader returns: the stored data before validation and unit conversion.

    Attributes
    ----------
    data : array-like
        The channel as stored (any numeric dtype; singleton dimensions are squeezed).
    pixel_size_nm : float or (float, float) or None
        Pixel size in nm from the file, ``(x, y)``; None when the file does not say (the caller
        must then pass ``pixel_size_nm`` to :func:`~hybridtmd.io.load_image`).
    z_unit : str or None
        Unit of the stored values: a length (``m``, ``um``, ``nm``...) for heights, the signal's
        own unit for other channels (``V``, ``deg``...), ``"counts"`` for integers of unknown scale
        (taken as nm with a warning unless ``z_scale`` is given), None for nm.
    metadata : dict or None
        Anything worth keeping; a ``"channel"`` entry names the channel that was read.
    z_scale_required : bool
        The values carry no height scale at all (grey levels of a picture): counts are refused
        without ``z_scale`` instead of being taken as nm.
    """

    data: Any
    pixel_size_nm: float | tuple[float, float] | None = None
    z_unit: str | None = None
    metadata: dict[str, Any] | None = None
    z_scale_required: bool = False


__all__ = ["RawImage"]

"""Feature names for people: descriptor columns with their units, and columns by kind."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..model import PHYS_PREFIX, feature_units

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def format_unit(unit: str) -> str:
    """A registry unit in compact form: ``per µm²`` → ``µm⁻²``, ``per px`` → ``px⁻¹``;
    dimensionless (``1``) and ``a.u.`` → ``""``."""
    unit = unit.strip()
    if unit in ("1", "", "a.u."):
        return ""
    if unit.startswith("per "):
        base = unit[4:].strip()
        exponent = {"²": 2, "³": 3}.get(base[-1], 1)
        base = base[:-1] if exponent > 1 else base
        return base + f"-{exponent}".translate(_SUPERSCRIPT)
    return unit


def display_names(columns: Sequence[str]) -> dict[str, str]:
    """Column → readable name with its unit: ``phys__grain_density_per_um2`` →
    ``grain_density_per_um2 [µm⁻²]``; latent and unknown columns keep their name."""
    units = feature_units(list(columns))
    names = {}
    for col in columns:
        if col.startswith(PHYS_PREFIX):
            unit = format_unit(units[col])
            names[col] = col[len(PHYS_PREFIX):] + (f" [{unit}]" if unit else "")
        else:
            names[col] = col
    return names


def with_display_names(explanation: Any) -> Any:
    """A copy of ``explanation`` whose feature names carry units (for figures only: the raw
    column names of :func:`~hybridtmd.explanation.explain` are what tables and code should index
    by)."""
    import shap

    names = display_names(list(explanation.feature_names))
    return shap.Explanation(values=explanation.values, base_values=explanation.base_values,
                            data=explanation.data, feature_names=[names[c] for c in explanation.feature_names],
                            output_names=explanation.output_names)

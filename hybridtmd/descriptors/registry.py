"""Registry of descriptor families and of the descriptors (columns) each one produces.

Every column of a descriptor table has one :class:`DescriptorSpec`: its name (which carries the
unit where one applies, e.g. ``grain_density_per_um2``), family, unit, a one-line definition and a
reference. Explanations (SHAP, correlation reports) read names, units and definitions from here,
so a user-defined descriptor registered with :func:`register_family` and
:func:`register_descriptor` is explained exactly like a built-in one.

A family is a function ``compute(surface) -> Mapping[str, float]`` taking a
:class:`~hybridtmd.descriptors.core.Surface` (the levelled image plus cached derived arrays) and
returning a value for each of its registered descriptors. It may return a
:class:`DescriptorValues` to give the reason a value is undefined (NaN); a family that raises
gives NaN for all its columns, with the exception as the reason, instead of stopping a batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .core import Surface


class DescriptorValues(dict):
    """A ``dict`` of descriptor values that also records why some of them are NaN.

    ``reasons`` maps a descriptor name to a short human-readable reason ("flat image",
    "no grains found"...). Use :meth:`undefined` to set values to NaN with a reason.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reasons: dict[str, str] = {}

    def undefined(self, names: str | Iterable[str], reason: str) -> None:
        """Set ``names`` to NaN and record ``reason`` for each."""
        for name in [names] if isinstance(names, str) else names:
            self[name] = math.nan
            self.reasons[name] = reason

    def update_from(self, other: Mapping[str, float]) -> None:
        """Merge another mapping, keeping its reasons (if it is a DescriptorValues)."""
        self.update(other)
        self.reasons.update(getattr(other, "reasons", {}))


@dataclass(frozen=True)
class DescriptorSpec:
    """Metadata of one descriptor (one column of the feature table)."""

    name: str
    family: str
    unit: str
    definition: str
    reference: str = ""


@dataclass
class Family:
    """A group of descriptors computed together by one function."""

    name: str
    compute: Callable[[Surface], Mapping[str, float]]
    description: str = ""
    reference: str = ""
    default: bool = False
    descriptors: list[DescriptorSpec] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.descriptors]

    def copy(self) -> Family:
        """The family as it is now: later :func:`register_descriptor` calls do not add to the copy."""
        return dataclasses.replace(self, descriptors=list(self.descriptors))


_FAMILIES: dict[str, Family] = {}


class RegistryError(ValueError):
    """Unknown family, duplicate descriptor name, or an invalid registration."""


def register_family(
    name: str,
    compute: Callable[[Surface], Mapping[str, float]],
    *,
    description: str = "",
    reference: str = "",
    default: bool = False,
    descriptors: Sequence[DescriptorSpec | tuple[str, str, str]] = (),
    replace: bool = False,
) -> Family:
    """Register a descriptor family.

    Parameters
    ----------
    name : str
        Family name used in ``families=[...]`` selections and in feature groups.
    compute : callable
        ``compute(surface) -> Mapping[str, float]``; see the module docstring.
    description, reference : str
        One line on what the family measures, and where the definitions come from.
    default : bool
        Whether ``families=None`` includes it (the built-in families do; user families are
        opt-in by name unless this is True).
    descriptors : sequence of DescriptorSpec or (name, unit, definition)
        Its descriptors; more can be added with :func:`register_descriptor`.
    replace : bool
        Allow replacing an existing family of the same name (its descriptors are dropped).
    """
    if not name or not name.isidentifier():
        raise RegistryError(f"family name must be a Python identifier, got {name!r}")
    if not callable(compute):
        raise RegistryError(f"compute of family {name!r} is not callable")
    if name in _FAMILIES and not replace:
        raise RegistryError(f"family {name!r} is already registered (pass replace=True to replace it)")
    family = Family(name, compute, description, reference, default)
    _FAMILIES[name] = family
    for spec in descriptors:
        if isinstance(spec, DescriptorSpec):
            register_descriptor(spec.name, name, spec.unit, spec.definition, spec.reference or reference)
        else:
            spec_name, unit, definition = spec
            register_descriptor(spec_name, name, unit, definition, reference)
    return family


def register_descriptor(name: str, family: str, unit: str, definition: str, reference: str = "") -> DescriptorSpec:
    """Add descriptor ``name`` (a column) to a registered ``family``.

    Names are global (they become column names): registering a name twice is an error.
    ``unit`` is a short unit string ("nm", "per µm²", "1" for dimensionless).
    """
    if family not in _FAMILIES:
        raise RegistryError(f"unknown family {family!r}; register it first with register_family")
    if not name or any(c in name for c in " ,[]<>\"'"):
        # XGBoost rejects [ ] < in feature names; spaces and commas break CSV/CLI use
        raise RegistryError(f"descriptor name {name!r} must be non-empty without spaces, commas, quotes, [ ] < >")
    for fam in _FAMILIES.values():
        if name in fam.names:
            raise RegistryError(f"descriptor {name!r} is already registered in family {fam.name!r}")
    spec = DescriptorSpec(name, family, unit, definition, reference or _FAMILIES[family].reference)
    _FAMILIES[family].descriptors.append(spec)
    return spec


def unregister_family(name: str) -> None:
    """Remove a family and its descriptors (for tests and interactive work)."""
    if name not in _FAMILIES:
        raise RegistryError(f"unknown family {name!r}")
    del _FAMILIES[name]


def get_family(name: str) -> Family:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise RegistryError(f"unknown descriptor family {name!r}; known: {', '.join(_FAMILIES)}") from None


def family_names(default_only: bool = False) -> list[str]:
    """Registered family names in registration order (only the default ones if asked)."""
    return [n for n, f in _FAMILIES.items() if f.default or not default_only]


def resolve_families(families: str | Sequence[str] | None) -> list[Family]:
    """Families selected by ``families`` (None: the default ones; a name; or a list of names),
    in the order given, without duplicates."""
    if families is None:
        names = family_names(default_only=True)
    elif isinstance(families, str):
        names = [families]
    else:
        names = list(dict.fromkeys(families))
    if not names:
        raise RegistryError("no descriptor family selected")
    return [get_family(n) for n in names]


def list_descriptors(families: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Table of the descriptors of ``families`` (default: every registered family):
    name, family, unit, definition, reference - in column order of the feature table."""
    import pandas as pd

    selected = [get_family(n) for n in family_names()] if families is None else resolve_families(families)
    rows = [
        {"name": d.name, "family": d.family, "unit": d.unit, "definition": d.definition, "reference": d.reference}
        for fam in selected
        for d in fam.descriptors
    ]
    return pd.DataFrame(rows, columns=["name", "family", "unit", "definition", "reference"])


def describe(name: str) -> DescriptorSpec:
    """The spec of one descriptor by name (for labels: ``f"{spec.name} [{spec.unit}]"``)."""
    for fam in _FAMILIES.values():
        for d in fam.descriptors:
            if d.name == name:
                return d
    raise RegistryError(f"unknown descriptor {name!r}")

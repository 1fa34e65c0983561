"""Registry of descriptor families and of the descriptors (columns) each one produces.

Every column of a descriptor table has one :class:`DescriptorSpec`: its name (which carries the
unit where one applies, e.g. ``grain_density_per_um2``), family, unit, a one-line definition and a
reference. Explanations (SHAP, correlation reports) read names, units and definitions from here,
so a user-defined descriptor registered with :func:`register_family` and
:func:`register_descriptor` is explained exactly like a built-in one.

Selections. ``families`` in :class:`~hybridtmd.descriptors.DescriptorExtractor` and
:func:`resolve_families` is a list whose entries are family names (the family's *default*
descriptors), descriptor names (that one descriptor, also one outside the default set) or
``"<family>:all"`` (every descriptor of the family); or one of the presets :data:`DEFAULT`
(every default family, default descriptors) and :data:`RELEASE_0_1_0` / ``None`` (the 98 columns
of release 0.1.0, which saved its default as ``families: None``).

Resolution. Each descriptor says whether its value is the same at any pixel size at or finer than
the reference pixel (``resolution_invariant``; ``DescriptorConfig.reference_pixel_nm``, 10 nm by
default): physical-unit descriptors evaluated at the reference resolution are, the paper's pixel
definitions are not (``scale_note`` says why). A scan coarser than the reference is interpolated to
it (with a warning) and lacks the detail in between, so the promise does not extend to it.
``tests/test_descriptors_scale.py`` measures every flagged descriptor on one surface sampled at
two pixel sizes: a descriptor cannot be flagged without passing it.

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

from .release import RELEASE_0_1_0, RELEASE_0_1_0_COLUMNS, RELEASE_0_1_0_FAMILIES

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
    #: in the family's default columns (False: selected only by name or ``"<family>:all"``)
    default: bool = True
    #: same value, within the tolerance docs/descriptors.md states, at any pixel size finer than the reference
    resolution_invariant: bool = False
    #: why the value depends on the pixel size, or what makes it independent of it
    scale_note: str = ""
    #: unit of a descriptor of the channel's values: ``{z}`` stands for the channel's unit
    #: (``"{z}"``, ``"{z}/nm"``); empty for descriptors whose unit is not the channel's
    z_unit: str = ""


@dataclass
class Family:
    """A group of descriptors computed together by one function."""

    name: str
    compute: Callable[[Surface], Mapping[str, float]]
    description: str = ""
    reference: str = ""
    default: bool = False
    descriptors: list[DescriptorSpec] = field(default_factory=list)
    #: families whose values do not need heights in nm (they can describe phase, adhesion...)
    any_channel: bool = False

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.descriptors]

    @property
    def default_names(self) -> list[str]:
        return [d.name for d in self.descriptors if d.default]

    def restricted(self, names: Iterable[str]) -> Family:
        """A copy computing only ``names`` (in registration order)."""
        keep = set(names)
        return dataclasses.replace(self, descriptors=[d for d in self.descriptors if d.name in keep])

    def copy(self) -> Family:
        """The family as it is now: later :func:`register_descriptor` calls do not add to the copy."""
        return dataclasses.replace(self, descriptors=list(self.descriptors))


_FAMILIES: dict[str, Family] = {}

#: preset selection: every default family with its default descriptors
DEFAULT = "default"


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
    any_channel: bool = False,
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
    any_channel : bool
        Whether the family also describes non-height channels (phase, adhesion...):
        ``DescriptorExtractor(channels=...)`` accepts it for them.
    """
    if not name or not name.isidentifier():
        raise RegistryError(f"family name must be a Python identifier, got {name!r}")
    if not callable(compute):
        raise RegistryError(f"compute of family {name!r} is not callable")
    if name in _FAMILIES and not replace:
        raise RegistryError(f"family {name!r} is already registered (pass replace=True to replace it)")
    if name in (DEFAULT, RELEASE_0_1_0):
        raise RegistryError(f"{name!r} is a preset selection, not a family name")
    family = Family(name, compute, description, reference, default, any_channel=any_channel)
    _FAMILIES[name] = family
    for spec in descriptors:
        if isinstance(spec, DescriptorSpec):
            _add_spec(dataclasses.replace(spec, family=name, reference=spec.reference or reference))
        else:
            spec_name, unit, definition = spec
            register_descriptor(spec_name, name, unit, definition, reference)
    return family


def register_descriptor(name: str, family: str, unit: str, definition: str, reference: str = "", *,
                        default: bool = True, resolution_invariant: bool = False, scale_note: str = "",
                        z_unit: str = "") -> DescriptorSpec:
    """Add descriptor ``name`` (a column) to a registered ``family``.

    Names are global (they become column names): registering a name twice is an error.
    ``unit`` is a short unit string ("nm", "per µm²", "1" for dimensionless). The keywords are
    the :class:`DescriptorSpec` fields of the same names.
    """
    if family not in _FAMILIES:
        raise RegistryError(f"unknown family {family!r}; register it first with register_family")
    return _add_spec(DescriptorSpec(name, family, unit, definition, reference or _FAMILIES[family].reference,
                                    default, resolution_invariant, scale_note, z_unit))


def _add_spec(spec: DescriptorSpec) -> DescriptorSpec:
    name = spec.name
    if not name or any(c in name for c in " ,[]<>\"':") or "__" in name:
        # XGBoost rejects [ ] < in feature names; spaces and commas break CSV/CLI use; ":" and
        # "__" are the selection and channel separators
        raise RegistryError(f"descriptor name {name!r} must be non-empty without spaces, commas, quotes, "
                            "':', '__', [ ] < >")
    if name in (DEFAULT, RELEASE_0_1_0) or name in _FAMILIES:
        raise RegistryError(f"descriptor name {name!r} is a family or preset name")
    for fam in _FAMILIES.values():
        if name in fam.names:
            raise RegistryError(f"descriptor {name!r} is already registered in family {fam.name!r}")
    _FAMILIES[spec.family].descriptors.append(spec)
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
    """The families a selection computes (see the module docstring), each restricted to its
    selected descriptors: families in the order of their first mention, descriptors in
    registration order, no duplicates."""
    if families is None or families == RELEASE_0_1_0:
        return [get_family(n).restricted(RELEASE_0_1_0_COLUMNS) for n in RELEASE_0_1_0_FAMILIES]
    entries = [families] if isinstance(families, str) else list(families)
    if entries == [DEFAULT]:
        entries = family_names(default_only=True)
    if not entries:
        raise RegistryError("no descriptor family selected")
    chosen: dict[str, set[str]] = {}
    for entry in entries:
        family, names = _selected_by(entry)
        chosen.setdefault(family, set()).update(names)
    return [get_family(f).restricted(names) for f, names in chosen.items()]


def _selected_by(entry: str) -> tuple[str, list[str]]:
    """(family, descriptor names) one selection entry stands for."""
    if entry in (DEFAULT, RELEASE_0_1_0):
        raise RegistryError(f"preset {entry!r} cannot be combined with other entries")
    if entry in _FAMILIES:
        return entry, _FAMILIES[entry].default_names
    if entry.endswith(":all") and entry[:-4] in _FAMILIES:
        return entry[:-4], _FAMILIES[entry[:-4]].names
    for fam in _FAMILIES.values():
        if entry in fam.names:
            return fam.name, [entry]
    raise RegistryError(f"unknown descriptor family or descriptor {entry!r}; families: {', '.join(_FAMILIES)}")


LIST_COLUMNS = ["name", "family", "unit", "definition", "reference", "default", "resolution_invariant",
                "scale_note"]


def list_descriptors(families: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Table of the descriptors of ``families`` (default: every descriptor of every registered
    family; otherwise a selection as in :func:`resolve_families`): name, family, unit,
    definition, reference, ``default`` (in the default set), ``resolution_invariant`` and
    ``scale_note`` (why it is or is not) - in column order of the feature table."""
    import pandas as pd

    selected = [get_family(n) for n in family_names()] if families is None else resolve_families(families)
    rows = [{key: getattr(d, key) for key in LIST_COLUMNS} for fam in selected for d in fam.descriptors]
    return pd.DataFrame(rows, columns=LIST_COLUMNS)


def describe(name: str) -> DescriptorSpec:
    """The spec of one descriptor by name (for labels: ``f"{spec.name} [{spec.unit}]"``)."""
    for fam in _FAMILIES.values():
        for d in fam.descriptors:
            if d.name == name:
                return d
    raise RegistryError(f"unknown descriptor {name!r}")


def annotate_descriptors(names: Iterable[str], **fields: Any) -> None:
    """Set :class:`DescriptorSpec` fields (``default``, ``resolution_invariant``, ``scale_note``,
    ``z_unit``) of registered descriptors, e.g. after a family registered them from
    ``(name, unit, definition)`` tuples."""
    unknown = set(fields) - {"default", "resolution_invariant", "scale_note", "z_unit"}
    if unknown:
        raise RegistryError(f"cannot annotate descriptor field(s) {sorted(unknown)}")
    for name in names:
        spec = describe(name)
        specs = _FAMILIES[spec.family].descriptors
        specs[specs.index(spec)] = dataclasses.replace(spec, **fields)

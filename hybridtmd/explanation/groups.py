"""SHAP summed over features: global importance per feature and attribution per feature group.

:func:`group_attributions` sums |SHAP| and signed SHAP over the model's feature groups
(descriptor families ``paper``, ``areal``, ``spectral``, ``grains``, ``texture`` and the CNN
``latent`` block), per image and globally, and gives the share of the attribution carried by
physical vs latent features for each class.

Multichannel models (descriptors of height and, e.g., phase) group another channel's columns as
``<channel>__<family>`` (``phase__texture``); :func:`regroup` gives the other views:
``group_by="family"`` (a family over every channel), ``"channel"`` (everything a channel
contributes) or ``"channel_family"`` (the model's groups). The default ``"auto"`` keeps the
model's groups, which are per channel and family whenever more than one channel is present.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..model.columns import LATENT_GROUP
from .attributions import per_class

PHYSICAL_BLOCK = "physical"
OTHER_BLOCK = "other"
#: The group of features that are in none of the given groups.
UNGROUPED = "ungrouped"


#: The ways :func:`regroup` groups columns (``"auto"``: the model's groups).
GROUP_BY = ("auto", "family", "channel", "channel_family")
#: The channel of the groups that carry no channel prefix (descriptor families of the height map).
HEIGHT_GROUP = "height"
_NOT_DESCRIPTORS = (LATENT_GROUP, OTHER_BLOCK, UNGROUPED)


def regroup(groups: Mapping[str, Sequence[str]], group_by: str = "auto") -> dict[str, list[str]]:
    """Feature groups by ``group_by`` (one of :data:`GROUP_BY`) from a model's groups
    (``model.feature_groups_``: height families, ``<channel>__<family>`` of another channel,
    ``latent``): ``"family"`` merges a family over channels (``areal`` + ``phase__areal`` ->
    ``areal``), ``"channel"`` merges a channel's families (``height``, ``phase``), and
    ``"channel_family"`` / ``"auto"`` keep the groups. ``latent`` and ``other`` are never merged
    with descriptors. Groups stay in first-appearance order."""
    if group_by not in GROUP_BY:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_BY)}, not {group_by!r}")
    out: dict[str, list[str]] = {}
    for group, columns in groups.items():
        channel, family = group.split("__", 1) if "__" in group else (HEIGHT_GROUP, group)
        if group in _NOT_DESCRIPTORS or group_by in ("auto", "channel_family"):
            key = group
        else:
            key = family if group_by == "family" else channel
        out.setdefault(key, []).extend(columns)
    return out


def feature_importance(explanation: Any) -> pd.DataFrame:
    """Global importance: mean |SHAP| over images of every feature (rows) for each class
    (columns) and their sum ``total``, sorted by ``total`` (largest first). Units: margin
    (log-odds)."""
    values, _, names = per_class(explanation)
    table = pd.DataFrame(np.abs(values).mean(axis=0), index=list(explanation.feature_names), columns=names)
    table["total"] = table.sum(axis=1)
    return table.sort_values("total", ascending=False, kind="stable").rename_axis("feature")


def block_of(group: str) -> str:
    """``latent`` for the CNN group, ``other`` for columns of no known kind, else ``physical``."""
    if group == LATENT_GROUP:
        return LATENT_GROUP
    return OTHER_BLOCK if group in (OTHER_BLOCK, UNGROUPED) else PHYSICAL_BLOCK


@dataclass(frozen=True)
class GroupAttribution:
    """SHAP summed over feature groups (all in margin units, log-odds).

    Attributes
    ----------
    per_image : DataFrame
        Long table: ``image`` (row index), ``class``, ``group``, ``block`` (physical / latent /
        other), ``abs_shap`` (sum of |SHAP| of the group's features), ``signed_shap`` (their sum:
        how far the group moved that image's margin).
    global_abs, global_signed : DataFrame
        Group (rows) × class (columns): mean over images of ``abs_shap`` / ``signed_shap``.
    share : DataFrame
        Class (rows) × block (columns): fraction of the class's total mean |SHAP| carried by
        each block; rows sum to 1.
    """

    per_image: pd.DataFrame
    global_abs: pd.DataFrame
    global_signed: pd.DataFrame
    share: pd.DataFrame


def member_positions(features: Sequence[str], groups: Mapping[str, Sequence[str]]) -> dict[str, list[int]]:
    """Group → positions of its features in ``features``; leftovers form ``ungrouped``; empty
    groups are dropped. A feature in two groups is a ValueError."""
    position = {f: j for j, f in enumerate(features)}
    members: dict[str, list[int]] = {}
    seen: set[str] = set()
    for group, columns in groups.items():
        if overlap := seen & set(columns):
            raise ValueError(f"features in more than one group would be counted twice: {sorted(overlap)[:5]}")
        seen |= set(columns)
        members[group] = [position[c] for c in columns if c in position]
    if rest := [j for j, f in enumerate(features) if f not in seen]:
        members[UNGROUPED] = rest
    return {g: idx for g, idx in members.items() if idx}


def group_attributions(explanation: Any, groups: Mapping[str, Sequence[str]], group_by: str = "auto"
                       ) -> GroupAttribution:
    """Sum |SHAP| and signed SHAP over feature groups, per image and globally.

    ``groups`` maps a group to its columns (``model.feature_groups_``), regrouped by
    ``group_by`` (:func:`regroup`: ``"family"``, ``"channel"``, ``"channel_family"``; default
    the groups as given). Features in no group form the group ``ungrouped``; a feature in two
    groups is an error (it would be counted twice).
    """
    values, _, classes = per_class(explanation)
    members = member_positions([str(f) for f in explanation.feature_names], regroup(groups, group_by))
    names = list(members)
    abs_sum = np.stack([np.abs(values[:, idx, :]).sum(axis=1) for idx in members.values()], axis=1)  # (n, g, k)
    signed = np.stack([values[:, idx, :].sum(axis=1) for idx in members.values()], axis=1)
    n = len(values)
    per_image = pd.DataFrame({
        "image": np.repeat(np.arange(n), len(names) * len(classes)),
        "class": np.tile(np.repeat(classes, len(names)), n),
        "group": np.tile(names, n * len(classes)),
        "abs_shap": np.moveaxis(abs_sum, 2, 1).ravel(),
        "signed_shap": np.moveaxis(signed, 2, 1).ravel(),
    })
    per_image.insert(3, "block", per_image["group"].map(block_of))
    global_abs = pd.DataFrame(abs_sum.mean(axis=0), index=names, columns=classes).rename_axis("group")
    global_signed = pd.DataFrame(signed.mean(axis=0), index=names, columns=classes).rename_axis("group")
    by_block = global_abs.groupby(global_abs.index.map(block_of)).sum()
    share = (by_block / by_block.sum(axis=0)).T.rename_axis("class")
    return GroupAttribution(per_image, global_abs, global_signed, share)

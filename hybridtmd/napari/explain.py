"""One image's explanation for the Explain widget, without napari: the attribution per feature
group, the top physical drivers with their values, the maps of its top latent dimensions, and
the grains and DoG blobs its descriptors counted.

The numbers are the library's: :func:`~hybridtmd.explanation.explain_set` (exact TreeSHAP summed
over the groups for tree heads, exact group Shapley values otherwise, as in the HTML report),
:func:`~hybridtmd.explanation.plot_group_waterfall` for the bar figure,
:func:`~hybridtmd.embeddings.latent_maps` for the maps, which are in the image's own pixels and
so lie on the scan with its scale, and :func:`~hybridtmd.descriptors.grain_labels` /
:func:`~hybridtmd.descriptors.blob_positions` for the segmentation and blobs the model's
descriptors measured (with the model's levelling and descriptor settings), in nm on the scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..descriptors import GrainLabels, blob_positions, grain_labels
from ..descriptors.extract import effective_config
from ..embeddings import LatentMaps, latent_maps
from ..explanation import explain_set, latent_label, plot_group_waterfall
from ..explanation.attributions import per_class
from ..explanation.names import display_names
from ..model import LATENT_PREFIX, PHYS_PREFIX, HybridClassifier
from .classify import height_of


@dataclass
class ImageExplanation:
    """What the Explain widget shows for one image.

    Attributes
    ----------
    label : str  the predicted class
    shown_class : str  the class the attributions are of (the predicted one; a binary model's
        positive class)
    unit, method : what the attributions are in and how they were computed
    groups : DataFrame  ``group``, ``attribution`` (the waterfall's bars), largest |value| first
    drivers : DataFrame  ``descriptor`` (name with unit), ``value``, ``attribution``
    latent : LatentMaps or None  maps of the top latent dimensions (None without an embedder)
    latent_labels : list of str  the maps' names with their physical correlates
    figure : ndarray (H, W, 4) uint8  the group waterfall rendered for the widget
    grains : GrainLabels or None  the segmentation the model's ``grains`` descriptors measured
        (None when the model has none)
    blobs : DataFrame or None  the DoG blobs its blob descriptor counted (``x_nm``, ``y_nm``,
        ``sigma_nm``, ``radius_nm``), None when it has none
    blob_family : str or None  whose blobs: ``"morphology"`` or ``"paper"``
    """

    label: str
    shown_class: str
    unit: str
    method: str
    groups: pd.DataFrame
    drivers: pd.DataFrame
    latent: LatentMaps | None
    latent_labels: list[str]
    figure: np.ndarray
    grains: GrainLabels | None = None
    blobs: pd.DataFrame | None = None
    blob_family: str | None = None


def figure_pixels(fig: Any, dpi: float = 64) -> np.ndarray:
    """A matplotlib figure as an RGBA array at ``dpi`` (drawn off screen; the figure is closed);
    the default fits the waterfall in a dock widget."""
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba()).copy()
    plt.close(fig)
    return pixels


def _ranked(values: np.ndarray, top: int) -> list[int]:
    """Positions of the ``top`` largest |values|, zeros left out (features the trees never used)."""
    order = np.argsort(-np.abs(values), kind="stable")
    return [int(j) for j in order[:top] if values[j] != 0]


def physical_drivers(explained: Any, k: int, top: int) -> pd.DataFrame:
    """The ``top`` physical descriptors by |attribution| for output ``k`` of the first image, with
    their values: per-feature TreeSHAP where the head has trees, else the per-descriptor Shapley
    values of the screened descriptors."""
    source = explained.features if explained.features is not None else explained.descriptor_values
    if source is None:
        return pd.DataFrame(columns=["descriptor", "value", "attribution"])
    values, _, _ = per_class(source)
    names = [str(f) for f in source.feature_names]
    physical = [j for j, n in enumerate(names) if n.startswith(PHYS_PREFIX)]
    contributions = values[0, physical, min(k, values.shape[2] - 1)]
    chosen = [physical[j] for j in _ranked(contributions, top)]
    shown = display_names([names[j] for j in chosen])
    return pd.DataFrame({
        "descriptor": [shown[names[j]] for j in chosen],
        "value": [float(explained.table[names[j]].iloc[0]) for j in chosen],
        "attribution": [float(values[0, j, min(k, values.shape[2] - 1)]) for j in chosen],
    })


def top_latent(explained: Any, k: int, top: int) -> list[str]:
    """The latent columns to map: the top latent drivers by |TreeSHAP| for tree heads, else the
    dimensions with the largest values (where the embedding fires most)."""
    latent = [c for c in explained.table.columns if str(c).startswith(LATENT_PREFIX)]
    if not latent or top <= 0:
        return []
    if explained.features is not None:
        values, _, _ = per_class(explained.features)
        names = [str(f) for f in explained.features.feature_names]
        scores = values[0, [names.index(c) for c in latent], min(k, values.shape[2] - 1)]
    else:
        scores = explained.table[latent].to_numpy(dtype=np.float64)[0]
    return [latent[j] for j in np.argsort(-np.abs(scores), kind="stable")[:top]]


def descriptor_maps(model: HybridClassifier, item: Any) -> tuple[GrainLabels | None, pd.DataFrame | None,
                                                                  str | None]:
    """The grain labels and DoG blobs behind the model's descriptors of one model input, computed
    as the model computed them (its levelling, its descriptor settings): ``(grains, blobs,
    blob_family)``, each None when the model has no such descriptor. The ``morphology`` blobs
    are preferred to the ``paper`` ones when the model has both. The image is levelled once, with
    the model's settings (or its extractor's when the model does not level): a custom extractor
    that levels again inside a levelling model is approximated by the single levelling."""
    features = model.features_
    extractor = getattr(features, "descriptors_", None)
    if extractor is None:
        return None, None, None
    columns = {str(c) for c in extractor.get_feature_names_out()}
    # the model levels once before its descriptors (features), or its extractor levels itself
    options = {"config": effective_config(extractor.families, extractor.config),
               "level_images": bool(features.level_images or extractor.level_images),
               "level_config": features.level_config if features.level_images else extractor.level_config}
    image = height_of(item)
    grains = grain_labels(image, **options) if columns & {"grain_count", "grain_density_per_um2"} else None
    family = ("morphology" if "morph_dog_blob_density_per_um2" in columns else
              "paper" if columns & {"paper_dog_blob_count", "paper_dog_blob_density_per_um2"} else None)
    blobs = blob_positions(image, family=family, **options) if family else None
    return grains, blobs, family


def explain_item(model: HybridClassifier, item: Any, *, drivers: int = 5, latent: int = 3) -> ImageExplanation:
    """Explain ``model``'s prediction for one model input (an AFMImage, or channel -> AFMImage)."""
    explained = explain_set(model, [item], top_descriptors=drivers)
    k = int(explained.predicted[0])
    values, _, classes = per_class(explained.groups)
    out = min(k, values.shape[2] - 1)
    groups = pd.DataFrame({"group": [str(g) for g in explained.groups.feature_names],
                           "attribution": values[0, :, out]})
    groups = groups.iloc[np.argsort(-groups["attribution"].abs().to_numpy(), kind="stable")].reset_index(drop=True)
    dims = top_latent(explained, k, latent) if getattr(model.features_, "embedder_", None) is not None else []
    maps = latent_maps(model, height_of(item), dims) if dims else None
    labels = [latent_label(n, explained.correlates) for n in maps.names] if maps is not None else []
    figure = figure_pixels(plot_group_waterfall(explained.groups, 0, k, explained.unit))
    grains, blobs, blob_family = descriptor_maps(model, item)
    return ImageExplanation(label=str(explained.predicted_labels[0]), shown_class=classes[out], unit=explained.unit,
                            method=explained.method, groups=groups, drivers=physical_drivers(explained, k, drivers),
                            latent=maps, latent_labels=labels, figure=figure, grains=grains, blobs=blobs,
                            blob_family=blob_family)

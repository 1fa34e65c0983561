"""The Classify and Explain dock widgets (magicgui containers; napari passes the viewer as their
``napari_viewer`` argument).

Both read a saved model directory (``hybridtmd train``) and work on the selected image layers.
Results are shown in the widget and written into each layer's metadata (``hybridtmd_prediction``,
``hybridtmd_explanation``), so they travel with the layer. A problem with a layer is shown as
one line naming it and the reason; the other layers are still classified.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from magicgui.widgets import Container, FileEdit, FloatSpinBox, Image, PushButton, SpinBox, Table, TextEdit
from napari.layers import Image as ImageLayer
from napari.utils.notifications import show_warning
from napari.viewer import Viewer

from ..model.conformal import DEFAULT_ALPHA
from .classify import IMAGE_ERRORS, layer_input, load_image_model, summary_line, with_sets
from .explain import explain_item
from .gl_safety import keep_triton_out
from .layers import PREDICTION_KEY, overlay_kwargs

EXPLANATION_KEY = "hybridtmd_explanation"


def table_value(frame: pd.DataFrame, digits: int = 4) -> dict[str, Any]:
    """A DataFrame as magicgui Table data (floats rounded for reading)."""
    shown = frame.round(digits)
    return {"data": shown.astype(object).to_numpy().tolist(), "columns": [str(c) for c in shown.columns],
            "index": [str(i) for i in shown.index]}


class ModelWidget(Container):
    """A model directory chooser and a status line; the model is loaded once per directory.
    With ``sets``, the miscoverage ``alpha`` of the conformal prediction sets (used when the
    model has a conformal calibration)."""

    def __init__(self, napari_viewer: Viewer, button: str, sets: bool = False):
        keep_triton_out()  # before the model imports torchvision (see gl_safety)
        self.viewer = napari_viewer
        self.model_dir = FileEdit(mode="d", label="model")
        self.alpha = FloatSpinBox(value=DEFAULT_ALPHA, min=0.01, max=0.5, step=0.01, label="set alpha",
                                  tooltip="prediction sets hold the true class with probability 1 - alpha "
                                          "(models trained with conformal sets)")
        self.run_button = PushButton(text=button)
        self.status = TextEdit(value="", label="result")  # wraps: a long line would widen the dock
        self._model: Any = None
        self._model_path: Path | None = None
        super().__init__(widgets=[self.model_dir, *([self.alpha] if sets else []), self.run_button, self.status])

    def model(self) -> Any:
        """The model of the chosen directory (loaded at first use and when the choice changes)."""
        path = Path(self.model_dir.value)
        if self._model is None or path != self._model_path:
            self._model, warnings = load_image_model(path)
            self._model_path = path
            for line in warnings:
                show_warning(f"{path}: {line}")
        return self._model

    def selected_images(self) -> list[ImageLayer]:
        return [layer for layer in self.viewer.layers.selection if isinstance(layer, ImageLayer)]

    def say(self, text: str) -> None:
        self.status.value = text


class ClassifyWidget(ModelWidget):
    """Classify the selected image layers: label, confidence, prediction set, OOD flag."""

    def __init__(self, napari_viewer: Viewer):
        super().__init__(napari_viewer, "Classify selected layers", sets=True)
        self.table = Table(value={"data": [], "columns": []})
        self.append(self.table)
        self.run_button.changed.connect(self.classify_selected)

    def classify_selected(self) -> pd.DataFrame | None:
        """Classify every selected image layer; the predictions table (None when nothing was)."""
        try:
            model = self.model()
        except IMAGE_ERRORS as exc:
            self.say(f"cannot load the model: {exc}")
            return None
        layers = self.selected_images()
        if not layers:
            self.say("select one or more image layers first")
            return None
        frames, lines, no_sets = [], [], None
        for layer in layers:
            try:
                frame = model.predict_frame([layer_input(model, layer)], index=[layer.name])
            except IMAGE_ERRORS as exc:
                lines.append(f"skipped {layer.name}: {exc}")
                continue
            frame, no_sets = with_sets(model, frame, self.alpha.value)
            layer.metadata[PREDICTION_KEY] = frame.iloc[0].to_dict()
            lines.append(summary_line(layer.name, frame.iloc[0]))
            frames.append(frame)
        self.say("\n".join(lines + ([no_sets] if no_sets else [])))
        if not frames:
            return None
        table = pd.concat(frames)
        self.table.value = table_value(table)
        return table


class ExplainWidget(ModelWidget):
    """Explain the prediction for the selected image: group bars, top drivers, latent maps."""

    def __init__(self, napari_viewer: Viewer):
        super().__init__(napari_viewer, "Explain selected layer")
        self.n_drivers = SpinBox(value=5, min=1, max=20, label="physical drivers")
        self.n_latent = SpinBox(value=3, min=0, max=8, label="latent maps")
        self.groups_figure = Image()
        self.drivers = Table(value={"data": [], "columns": []})
        self.extend([self.n_drivers, self.n_latent, self.groups_figure, self.drivers])
        self.run_button.changed.connect(self.explain_selected)

    def explain_selected(self) -> Any:
        """Explain the active image layer; the :class:`~.explain.ImageExplanation` (None on error)."""
        layer = self.viewer.layers.selection.active
        if not isinstance(layer, ImageLayer):
            self.say("select one image layer first")
            return None
        try:
            model = self.model()
            result = explain_item(model, layer_input(model, layer), drivers=self.n_drivers.value,
                                  latent=self.n_latent.value)
        except IMAGE_ERRORS as exc:
            self.say(f"cannot explain {layer.name}: {exc}")
            return None
        self.groups_figure.value = result.figure
        self.groups_figure.min_height, self.groups_figure.min_width = result.figure.shape[:2]
        self.drivers.value = table_value(result.drivers.set_index("descriptor"))
        self.add_latent_layers(layer, result)
        self.add_descriptor_layers(layer, result)
        self.viewer.layers.selection.active = layer  # adding made the last overlay active: the scan stays chosen
        layer.metadata[EXPLANATION_KEY] = {
            "label": result.label, "class": result.shown_class, "unit": result.unit, "method": result.method,
            "groups": dict(zip(result.groups["group"], result.groups["attribution"], strict=True)),
            "drivers": result.drivers.to_dict("records"), "latent": result.latent_labels,
            "grains": None if result.grains is None else result.grains.count,
            "blobs": None if result.blobs is None else len(result.blobs)}
        top = ", ".join(f"{g} {v:+.3g}" for g, v in result.groups.head(3).itertuples(index=False))
        none = "" if len(result.drivers) else "; no physical descriptor moved this prediction"
        shown = [f"{result.grains.count} grains"] if result.grains is not None else []
        shown += [f"{len(result.blobs)} DoG blobs"] if result.blobs is not None else []
        overlays = f"; overlaid: {', '.join(shown)}" if shown else ""
        self.say(f"{layer.name}: {result.label}; attribution to {result.shown_class} ({result.unit}): {top}{none}"
                 f"{overlays}")
        return result

    def add_latent_layers(self, layer: ImageLayer, result: Any) -> list[ImageLayer]:
        """One overlay per latent map, on the scan's grid (same scale and translation); the top
        driver's map is shown, the others are listed hidden (stacked, they would hide each other)."""
        if result.latent is None:
            return []
        added = []
        for i, (values, label) in enumerate(zip(result.latent.maps, result.latent_labels, strict=True)):
            name = f"{layer.name} · {label}"
            self._replace(name)
            added.append(self.viewer.add_image(values, **overlay_kwargs(
                layer, name, colormap="inferno", opacity=0.55, blending="translucent", visible=i == 0,
                metadata={EXPLANATION_KEY: {"latent": label, "of": layer.name}})))
        return added

    def _replace(self, name: str) -> None:
        """Remove an overlay of an earlier explanation, which the new one replaces."""
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)

    def add_descriptor_layers(self, layer: ImageLayer, result: Any) -> list[Any]:
        """The grains the model's descriptors measured as a Labels layer (outlines, on the
        descriptors' grid: its own scale, translated onto the scan) and the DoG blobs they counted
        as a Points layer (centres in nm, size = diameter in nm); each only when the model has
        such descriptors."""
        added: list[Any] = []
        tag = {EXPLANATION_KEY: {"of": layer.name}}
        if result.grains is not None:
            name = f"{layer.name} · grains"
            self._replace(name)
            grains = result.grains
            added.append(self.viewer.add_labels(grains.labels, **overlay_kwargs(
                layer, name, pixel_size_nm=grains.pixel_size_nm, origin_nm=grains.origin_nm, opacity=0.8,
                metadata={EXPLANATION_KEY: {**tag[EXPLANATION_KEY], "grains": grains.count,
                                            "threshold_nm": grains.threshold_nm}})))
            added[-1].contour = 1  # outlines: the scan stays visible inside the grains
        if result.blobs is not None:
            name = f"{layer.name} · DoG blobs ({result.blob_family})"
            self._replace(name)
            blobs = result.blobs
            added.append(self.viewer.add_points(
                blobs[["y_nm", "x_nm"]].to_numpy(), size=2 * blobs["radius_nm"].to_numpy(),
                face_color="transparent", border_color="cyan", border_width=0.08, border_width_is_relative=True,
                **overlay_kwargs(layer, name, pixel_size_nm=(1.0, 1.0),
                                 metadata={EXPLANATION_KEY: {**tag[EXPLANATION_KEY], "blobs": len(blobs)}})))
        return added

"""The napari plugin (hybridtmd[napari]) in napari's own test viewer (``make_napari_viewer``,
never shown): the reader, the layer scales, the three widgets, a screenshot.

Skipped with the reason when the extra is not installed (the core install), or when there is no
X display: napari's canvas needs OpenGL, which Qt's ``offscreen`` platform lacks, so headless
machines run these tests under Xvfb (pytest-xvfb, in the extra, starts it when ``Xvfb`` is
installed: ``apt-get install xvfb``). The screenshot of docs/napari.md is taken by
``tools/napari_screenshot.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

napari = pytest.importorskip("napari", reason="the napari extra is not installed (pip install 'hybridtmd[napari]')")
pytest.importorskip("pytestqt", reason="napari's make_napari_viewer fixture needs pytest-qt (hybridtmd[napari])")
if not os.environ.get("DISPLAY"):
    pytest.skip("napari's canvas needs an X display for OpenGL: install Xvfb (apt-get install xvfb), which "
                "pytest-xvfb starts", allow_module_level=True)

from corpus.files import sample_files_folder  # noqa: E402

from hybridtmd import explanation as ex  # noqa: E402
from hybridtmd.datasets import make_synthetic_dataset  # noqa: E402
from hybridtmd.descriptors import DescriptorExtractor, blob_positions, grain_labels  # noqa: E402
from hybridtmd.embeddings import CNNEmbedder  # noqa: E402
from hybridtmd.errors import HybridTMDError  # noqa: E402
from hybridtmd.explanation.attributions import per_class  # noqa: E402
from hybridtmd.io import SUPPORTED_SUFFIXES, load_channels, load_image, save_image  # noqa: E402
from hybridtmd.model import HybridClassifier, HybridFeatures, default_head  # noqa: E402
from hybridtmd.model.conformal import set_labels  # noqa: E402
from hybridtmd.napari.batch import BatchWidget  # noqa: E402
from hybridtmd.napari.explain import explain_item  # noqa: E402
from hybridtmd.napari.gl_safety import keep_triton_out  # noqa: E402
from hybridtmd.napari.layers import METADATA_KEY, PREDICTION_KEY  # noqa: E402
from hybridtmd.napari.reader import get_reader  # noqa: E402
from hybridtmd.napari.widgets import EXPLANATION_KEY, ClassifyWidget, ExplainWidget  # noqa: E402

keep_triton_out()  # the model fixture builds a CNN after viewers opened OpenGL (see gl_safety)
MANIFEST = Path(__file__).resolve().parents[1] / "hybridtmd" / "napari" / "napari.yaml"
PIXEL_NM = (6.0, 4.0)  # x, y: unequal, so a swapped scale shows


@pytest.fixture(scope="module")
def dataset():
    return make_synthetic_dataset(n_samples=8, images_per_sample=2, size_px=64, scan_size_um=(0.4, 0.6),
                                  materials=["MoS2", "WSe2"], seed=5)


@pytest.fixture(scope="module")
def model_dir(dataset, tmp_path_factory):
    """A small image model (areal, grains and morphology descriptors - grains and DoG blobs to
    overlay -, 64-px CNN embeddings, 30-tree XGBoost)."""
    features = HybridFeatures(descriptors=DescriptorExtractor(families=["areal", "grains", "morphology"]),
                              embedder=CNNEmbedder(device="cpu", input_size=64))
    head = default_head(0, n_jobs=1).set_params(n_estimators=30, learning_rate=0.3)
    model = HybridClassifier(features=features, classifier=head).fit(dataset.images, dataset.labels,
                                                                     groups=dataset.groups)
    return model.save(tmp_path_factory.mktemp("model") / "model")


def write_gwy(path: Path, height: np.ndarray, phase: np.ndarray, pixel_nm=PIXEL_NM) -> Path:
    """A two-channel Gwyddion file: heights in m, phase in deg."""
    from gwyfile.objects import GwyContainer, GwyDataField, GwySIUnit

    container = GwyContainer()
    rows, cols = height.shape
    for i, (title, values, unit, factor) in enumerate([("Height", height, "m", 1e-9), ("Phase", phase, "deg", 1.0)]):
        container[f"/{i}/data/title"] = title
        container[f"/{i}/data"] = GwyDataField(values * factor, xreal=cols * pixel_nm[0] * 1e-9,
                                               yreal=rows * pixel_nm[1] * 1e-9, si_unit_xy=GwySIUnit(unitstr="m"),
                                               si_unit_z=GwySIUnit(unitstr=unit))
    container.tofile(str(path))
    return path


@pytest.fixture(scope="module")
def scan(dataset, tmp_path_factory) -> Path:
    image = dataset.images[0]
    phase = np.random.default_rng(0).normal(10.0, 2.0, image.shape)
    return write_gwy(tmp_path_factory.mktemp("scan") / "film.gwy", image.height, phase)


def opened(viewer, path: Path):
    return viewer.open(str(path), plugin="hybridtmd")


def test_manifest_is_valid_and_reads_every_suffix_the_library_reads():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(MANIFEST)
    (reader,) = manifest.contributions.readers
    # the same suffixes (their order in the registry follows which reader module registers first)
    assert sorted(reader.filename_patterns) == sorted(f"*{s}" for s in SUPPORTED_SUFFIXES)
    assert len(reader.filename_patterns) == len(SUPPORTED_SUFFIXES)
    assert {w.display_name for w in manifest.contributions.widgets} == {"Classify", "Explain", "Batch predict"}


def test_reader_declines_a_file_hybridtmd_cannot_read():
    assert get_reader("notes.txt") is None
    assert get_reader(["a.gwy", "b.txt"]) is None
    assert get_reader("scan.gwy") is not None


def test_several_files_open_together_each_with_its_own_scale(dataset, scan, tmp_path):
    tif = save_image(dataset.images[1], tmp_path / "other.tif")
    layers = get_reader([str(scan), str(tif)])([str(scan), str(tif)])
    assert [kw["name"] for _, kw, _ in layers] == ["film · height [nm]", "film · phase [deg]", "other · height [nm]"]
    assert layers[2][1]["scale"] == dataset.images[1].pixel_size_nm[::-1]
    assert [kind for *_, kind in layers] == ["image"] * 3


def test_every_channel_opens_in_nm_with_the_pixel_size_as_scale(make_napari_viewer, scan):
    viewer = make_napari_viewer()
    layers = opened(viewer, scan)
    expected = load_channels(scan)
    assert [layer.name for layer in layers] == ["film · height [nm]", "film · phase [deg]"]
    assert [layer.visible for layer in layers] == [True, False]  # the phase map would cover the heights
    for layer, (key, image) in zip(layers, expected.items(), strict=True):
        np.testing.assert_array_equal(layer.data, image.height)
        assert tuple(layer.scale) == image.pixel_size_nm[::-1]  # napari's (y, x)
        assert tuple(layer.scale) == pytest.approx((PIXEL_NM[1], PIXEL_NM[0]))
        assert [str(u) for u in layer.units] == ["nanometer", "nanometer"]
        info = layer.metadata[METADATA_KEY]
        assert info["channel_key"] == key and info["z_unit"] == image.z_unit and info["source"] == str(scan)
    # the scale bar measures the scan: the layer spans the scan size in nm (extent: pixel centres)
    extent = layers[0].extent.world
    assert tuple(extent[1] - extent[0] + layers[0].scale) == pytest.approx((64 * PIXEL_NM[1], 64 * PIXEL_NM[0]))
    assert [str(u) for u in viewer.layers.units] == ["nanometer", "nanometer"]  # what the scale bar reads


def error_chain(error: BaseException | None) -> list[str]:
    """The messages of an error and of the errors it was raised from."""
    chain = []
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    return chain


@pytest.mark.parametrize("suffix", [".tif", ".npz", ".gwy"])
def test_every_format_hybridtmd_writes_opens_in_nm(dataset, tmp_path, suffix):
    image = dataset.images[3]
    path = str(save_image(image, tmp_path / f"scan{suffix}"))
    ((data, kwargs, kind),) = get_reader(path)(path)
    np.testing.assert_allclose(data, image.height, rtol=1e-6)  # float32 TIFF
    assert kind == "image" and kwargs["scale"] == pytest.approx(image.pixel_size_nm[::-1])
    assert kwargs["units"] == ("nm", "nm") and kwargs["name"] == "scan · height [nm]"
    assert kwargs["metadata"][METADATA_KEY]["z_unit"] == "nm"


@pytest.mark.skipif(sample_files_folder() is None, reason="AFMReader's instrument sample files are absent "
                    "(make samples)")
def test_the_instrument_sample_files_open_one_layer_per_channel_in_nm(make_napari_viewer):
    """Real files of five vendors (AFMReader's samples): every channel a layer, the pixel size
    as the scale, the unit in the name and metadata; a format whose reader is not installed is
    napari's error with hybridtmd's reason (the extra to install)."""
    viewer = make_napari_viewer()
    opened_any = False
    for path in sorted(sample_files_folder().iterdir()):
        if get_reader(str(path)) is None:
            continue
        try:
            expected = load_channels(path)
        except HybridTMDError as exc:  # e.g. .asd without hybridtmd[vendor]
            with pytest.raises(Exception) as caught:
                opened(viewer, path)
            reason = getattr(exc, "reason", str(exc))
            assert any(reason in text and path.name in text for text in error_chain(caught.value))
            continue
        layers = opened(viewer, path)
        opened_any = True
        assert len(layers) == len(expected)
        for layer, (key, image) in zip(layers, expected.items(), strict=True):
            assert tuple(layer.scale) == pytest.approx(image.pixel_size_nm[::-1])
            assert [str(u) for u in layer.units] == ["nanometer", "nanometer"]
            assert layer.name.endswith(f"· {key} [{image.z_unit}]")
            assert layer.metadata[METADATA_KEY]["z_unit"] == image.z_unit
        assert sum(layer.visible for layer in layers) == 1
        viewer.layers.clear()
    assert opened_any


def test_an_unreadable_file_gives_napari_error_with_hybridtmds_reason(make_napari_viewer, tmp_path):
    bare = tmp_path / "bare.npy"
    np.save(bare, np.random.default_rng(0).normal(size=(64, 64)))
    cut = tmp_path / "cut.gwy"
    cut.write_bytes(b"GWYP" + b"\0" * 10)
    viewer = make_napari_viewer()
    for path, reason in [(bare, "no pixel size"), (cut, "cut.gwy")]:
        with pytest.raises(Exception) as caught:
            opened(viewer, path)
        chain = error_chain(caught.value)
        assert any(reason in text for text in chain), chain
        assert any(path.name in text for text in chain), chain
    assert len(viewer.layers) == 0


def test_classify_widget_gives_the_librarys_prediction_and_writes_layer_metadata(make_napari_viewer, model_dir,
                                                                              scan):
    viewer = make_napari_viewer()
    height, phase = opened(viewer, scan)
    widget = ClassifyWidget(viewer)
    widget.model_dir.value = model_dir
    viewer.layers.selection = {height}
    table = widget.classify_selected()
    model = HybridClassifier.load(model_dir)
    expected = model.predict_frame([load_image(scan)])
    assert table["label"].tolist() == expected["label"].tolist()
    assert table["confidence"].to_numpy() == pytest.approx(expected["confidence"].to_numpy(), abs=1e-9)
    assert bool(table["out_of_distribution"].iloc[0]) == bool(expected["out_of_distribution"].iloc[0])
    assert height.metadata[PREDICTION_KEY]["label"] == expected["label"].iloc[0]
    assert expected["label"].iloc[0] in widget.status.value and "distribution" in widget.status.value.lower()
    assert "set" not in table  # this model makes no sets
    # a height model does not read a phase map as heights: that layer is skipped, saying why
    viewer.layers.selection = {phase, height}
    assert list(widget.classify_selected().index) == [height.name]
    assert f"skipped {phase.name}: " in widget.status.value and "not a height map" in widget.status.value


def test_classify_shows_the_prediction_set_when_the_model_has_one(make_napari_viewer, dataset, scan, tmp_path):
    """A model trained with conformal sets: the widget's set is the model's own predict_set at
    the widget's alpha (the columns of ``hybridtmd predict --alpha``); an alpha the calibration
    cannot serve is said, and the label is still given."""
    features = HybridFeatures(descriptors=DescriptorExtractor(families=["areal"]), embedder=None)
    head = default_head(0, n_jobs=1).set_params(n_estimators=20, learning_rate=0.3)
    model = HybridClassifier(features=features, classifier=head, conformal="marginal").fit(
        dataset.images, dataset.labels, groups=dataset.groups)
    viewer = make_napari_viewer()
    height, _ = opened(viewer, scan)
    widget = ClassifyWidget(viewer)
    widget.model_dir.value = model.save(tmp_path / "conformal")
    widget.alpha.value = 0.5
    viewer.layers.selection = {height}
    table = widget.classify_selected()
    expected = set_labels(model.predict_set([load_image(scan)], alpha=0.5), model.classes_)[0]
    assert table["set"].iloc[0] == expected and table["set_size"].iloc[0] == len(expected.split("|"))
    assert f"set {{{expected.replace('|', ', ')}}}" in widget.status.value
    assert height.metadata[PREDICTION_KEY]["set"] == expected
    widget.alpha.value = 0.01  # 2 calibration samples cannot make a 99 % set that leaves a class out
    table = widget.classify_selected()
    assert "set" not in table and table["label"].iloc[0] == model.predict([load_image(scan)])[0]
    assert "no prediction sets at alpha 0.01" in widget.status.value


def test_a_layer_without_pixel_size_is_skipped_with_the_reason(make_napari_viewer, model_dir, scan):
    viewer = make_napari_viewer()
    height, _ = opened(viewer, scan)
    bare = viewer.add_image(np.random.default_rng(0).normal(size=(64, 64)), name="pasted")
    widget = ClassifyWidget(viewer)
    widget.model_dir.value = model_dir
    viewer.layers.selection = {bare, height}
    table = widget.classify_selected()
    assert list(table.index) == [height.name]
    assert "skipped pasted: " in widget.status.value and "no pixel size" in widget.status.value


def test_a_bad_model_directory_is_one_line(make_napari_viewer, tmp_path):
    widget = ClassifyWidget(make_napari_viewer())
    widget.model_dir.value = tmp_path
    assert widget.classify_selected() is None
    assert widget.status.value.startswith("cannot load the model: ") and str(tmp_path) in widget.status.value


def test_batch_widget_predicts_a_folder_lists_skipped_files_and_exports_csv(make_napari_viewer, model_dir, dataset,
                                                                         tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(3):
        save_image(dataset.images[i], folder / f"scan{i}.tif")
    np.save(folder / "bare.npy", dataset.images[0].height)  # no pixel size
    (folder / "broken.gwy").write_bytes(b"not a gwyddion file")
    (folder / "notes.txt").write_text("not a scan")
    widget = BatchWidget(make_napari_viewer())
    widget.model_dir.value = model_dir
    widget.folder.value = folder
    table = widget.predict_folder()
    assert [Path(f).name for f in table["file"]] == ["scan0.tif", "scan1.tif", "scan2.tif"]
    expected = HybridClassifier.load(model_dir).predict(dataset.images[:3])
    assert table["label"].tolist() == list(expected)
    skipped = widget.skipped.value.splitlines()
    assert len(skipped) == 2
    assert skipped[0].startswith("skipped bare.npy: ") and "no pixel size" in skipped[0]
    assert skipped[1].startswith("skipped broken.gwy: ")
    assert widget.progress.value == widget.progress.max == 5
    assert "predicted 3 of 5 file(s); 2 skipped" in widget.status.value
    (tmp_path / "out.csv").write_text("an older table\n")
    widget.csv_path.value = tmp_path / "out.csv"
    written = widget.export_csv()
    pd.testing.assert_frame_equal(pd.read_csv(written), table, check_dtype=False)  # replaced whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "scans"]  # no temporary file left


@pytest.fixture(scope="module")
def explained_viewer(qapp, model_dir, scan):
    """A viewer with the scan and the Explain widget's overlays, shared by three tests (one
    explanation embeds the scan and maps its latent dimensions once)."""
    viewer = napari.Viewer(show=True)  # drawn (under Xvfb on headless machines), for the screenshot
    height, _ = opened(viewer, scan)
    _, widget = viewer.window.add_plugin_dock_widget("hybridtmd", "Explain")  # as the Plugins menu does
    assert isinstance(widget, ExplainWidget) and widget.viewer.layers[0].name == height.name
    widget.model_dir.value = model_dir
    viewer.layers.selection.active = height
    yield viewer, height, widget, widget.explain_selected()
    viewer.close()


def test_explain_widget_adds_latent_maps_on_the_scan_grid(explained_viewer):
    viewer, height, widget, result = explained_viewer
    overlays = [layer for layer in viewer.layers if layer.name.startswith(f"{height.name} · latent__")]
    assert len(overlays) == widget.n_latent.value == 3
    assert [layer.visible for layer in overlays] == [True, False, False]
    for layer, values in zip(overlays, result.latent.maps, strict=True):
        assert layer.data.shape == height.data.shape
        assert tuple(layer.scale) == tuple(height.scale) and tuple(layer.translate) == tuple(height.translate)
        np.testing.assert_array_equal(layer.data, values)
    # every map averages to its embedding value (the library's pooling identity), so it is that image's
    table = HybridClassifier.load(widget.model_dir.value).transform_features([load_image(height.metadata[
        METADATA_KEY]["source"])])
    for name, values in zip(result.latent.names, result.latent.maps, strict=True):
        assert np.nanmean(values) == pytest.approx(table[name].iloc[0], rel=1e-4, abs=1e-5)


def test_explain_widget_overlays_the_grains_and_blobs_the_descriptors_counted(explained_viewer):
    """The grains (Labels, on the descriptors' 10 nm grid) and the DoG blobs (Points, in nm) lie
    on the scan: the grid's outer edges are the scan's, the blobs' world positions are their nm
    positions on the scan; and they are what the model's descriptors counted."""
    viewer, height, widget, result = explained_viewer
    grains_layer = viewer.layers[f"{height.name} · grains"]
    blobs_layer = viewer.layers[f"{height.name} · DoG blobs (morphology)"]
    assert isinstance(grains_layer, napari.layers.Labels) and isinstance(blobs_layer, napari.layers.Points)
    assert viewer.layers.selection.active is height  # still the explained scan, ready for the next run
    assert grains_layer.visible and blobs_layer.visible and grains_layer.contour > 0
    image = load_image(height.metadata[METADATA_KEY]["source"])
    table = HybridClassifier.load(widget.model_dir.value).transform_features([image])
    grains = grain_labels(image)  # the model's settings are the defaults
    np.testing.assert_array_equal(grains_layer.data, grains.labels)
    assert grains.count == table["phys__grain_count"].iloc[0] > 0
    assert grains.labels.shape != height.data.shape  # a grid of its own: the reference pixels
    # its own scale, translated so that its outer pixel edges are the scan's
    assert tuple(grains_layer.scale) == pytest.approx(grains.pixel_size_nm[::-1])
    assert tuple(grains_layer.translate) == pytest.approx(tuple(np.add(height.translate, grains.origin_nm[::-1])))
    for layer_edge, scan_edge in [
        (grains_layer.translate - grains_layer.scale / 2, height.translate - height.scale / 2),
        (grains_layer.translate + (np.array(grains.labels.shape) - 0.5) * grains_layer.scale,
         height.translate + (np.array(height.data.shape) - 0.5) * height.scale)]:
        np.testing.assert_allclose(layer_edge, scan_edge, atol=1e-9)
    assert [str(u) for u in grains_layer.units] == [str(u) for u in height.units]
    # the blobs: data in nm (scale 1) on the scan's translation, size = diameter in nm
    blobs = blob_positions(image)
    assert len(blobs_layer.data) == len(blobs) == round(table["phys__morph_dog_blob_density_per_um2"].iloc[0]
                                                        * image.area_um2)
    assert tuple(blobs_layer.scale) == (1.0, 1.0) and tuple(blobs_layer.translate) == tuple(height.translate)
    np.testing.assert_allclose(blobs_layer.data, blobs[["y_nm", "x_nm"]].to_numpy())
    np.testing.assert_allclose(blobs_layer.size, 2 * blobs["radius_nm"].to_numpy())
    world = np.array([blobs_layer.data_to_world(point) for point in blobs_layer.data])
    pixels = np.array([height.world_to_data(point) for point in world])  # scan pixel coordinates
    np.testing.assert_allclose(pixels[:, ::-1] * image.pixel_size_nm, blobs[["x_nm", "y_nm"]].to_numpy(), atol=1e-9)
    assert result.grains.count == height.metadata[EXPLANATION_KEY]["grains"]
    assert f"overlaid: {grains.count} grains, {len(blobs)} DoG blobs" in widget.status.value
    names = [layer.name for layer in viewer.layers]
    widget.explain_selected()  # again: the overlays are replaced, not stacked
    assert [layer.name for layer in viewer.layers] == names and viewer.layers.selection.active is height


def test_explain_widget_shows_groups_and_writes_layer_metadata(explained_viewer):
    _, height, widget, result = explained_viewer
    assert {"latent", "areal", "grains"} <= set(result.groups["group"])
    assert result.groups["attribution"].abs().is_monotonic_decreasing
    assert result.figure.ndim == 3 and result.figure.shape[2] == 4 and result.figure[..., :3].std() > 0
    np.testing.assert_array_equal(widget.groups_figure.value, result.figure)
    saved = height.metadata[EXPLANATION_KEY]
    assert saved["label"] == result.label and set(saved["groups"]) == set(result.groups["group"])
    assert saved["latent"] == result.latent_labels
    assert result.label in widget.status.value


def test_top_physical_drivers_come_with_their_values(dataset):
    """A descriptor-only model (its trees can only split on descriptors): the drivers are the
    descriptors of largest |TreeSHAP|, each with its value in the model's feature table."""
    features = HybridFeatures(descriptors=DescriptorExtractor(families=["areal", "grains"]), embedder=None)
    head = default_head(0, n_jobs=1).set_params(n_estimators=30, learning_rate=0.3)
    model = HybridClassifier(features=features, classifier=head).fit(dataset.images, dataset.labels)
    image = dataset.images[0]
    result = explain_item(model, image, drivers=4, latent=3)
    assert result.latent is None and result.latent_labels == []
    drivers = result.drivers
    assert 1 <= len(drivers) <= 4 and drivers["attribution"].abs().is_monotonic_decreasing
    table = model.transform_features([image])
    values, _, _ = per_class(ex.explain(model, [image]))  # (1, features, outputs); binary: one output
    k = min(int(np.argmax(model.predict_proba([image])[0])), values.shape[2] - 1)
    shap_of = dict(zip(model.feature_names_, values[0, :, k], strict=True))
    for name, value, attribution in drivers.itertuples(index=False):
        column = "phys__" + name.split(" [")[0]
        assert value == table[column].iloc[0] and attribution == pytest.approx(shap_of[column])
    assert len(drivers) == min(4, sum(v != 0 for c, v in shap_of.items() if c.startswith("phys__")))


def test_screenshot_of_the_viewer_with_overlays(explained_viewer, tmp_path):
    """The canvas shows the scan, its top latent map, the grain outlines, the blobs and the scale
    bar, each overlay visibly (hiding it changes the canvas). The docs' picture of a larger scene
    is ``tools/napari_screenshot.py``'s."""
    viewer, height, _, _ = explained_viewer
    viewer.scale_bar.visible = True
    viewer.reset_view()
    canvas = viewer.screenshot(canvas_only=True, flash=False)
    assert canvas.ndim == 3 and canvas.shape[2] == 4
    assert canvas[..., :3].std() > 5  # the scan and its overlays, not a blank canvas
    # every overlay is drawn: hiding it changes the picture
    overlays = [layer for layer in viewer.layers if layer is not height and layer.visible]
    assert {type(layer).__name__ for layer in overlays} == {"Image", "Labels", "Points"}
    for layer in overlays:
        layer.visible = False
        without = viewer.screenshot(canvas_only=True, flash=False)
        layer.visible = True
        changed = np.abs(canvas[..., :3].astype(int) - without[..., :3].astype(int)).max(axis=2) > 10
        assert changed.mean() > 0.002, f"{layer.name}: no visible change ({changed.mean():.4f} of the pixels)"

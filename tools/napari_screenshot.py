"""The picture of docs/napari.md: napari with a synthetic scan opened by the hybridtmd reader and
the Explain widget's overlays - the top latent map, the grain outlines and the DoG blobs the
model's descriptors counted - with the scale bar in nm.

A small model is trained on synthetic scans first (areal, grains and morphology descriptors,
64-px CNN embeddings; a minute on two cores). napari's canvas needs OpenGL, so headless
machines run it under Xvfb:

    xvfb-run -a -s "-screen 0 1400x800x24" .venv/bin/python tools/napari_screenshot.py docs/napari.png

The tests take their own screenshot of a smaller scene (``tests/test_napari.py``); this one is
for reading.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="PNG to write, e.g. docs/napari.png")
    args = parser.parse_args(argv)

    from hybridtmd.napari.gl_safety import keep_triton_out

    keep_triton_out()  # before torchvision loads and after napari's canvas opens (see gl_safety)
    import napari
    from magicgui.application import use_app
    from PIL import Image

    from hybridtmd.datasets import make_synthetic_dataset
    from hybridtmd.descriptors import DescriptorExtractor
    from hybridtmd.embeddings import CNNEmbedder
    from hybridtmd.io import save_image
    from hybridtmd.model import HybridClassifier, HybridFeatures, default_head

    dataset = make_synthetic_dataset(n_samples=12, images_per_sample=2, size_px=160, scan_size_um=(1.2, 1.5),
                                     materials=["MoS2", "WSe2"], seed=5)
    features = HybridFeatures(descriptors=DescriptorExtractor(families=["areal", "grains", "morphology"]),
                              embedder=CNNEmbedder(device="cpu", input_size=64))
    head = default_head(0, n_jobs=1).set_params(n_estimators=60, learning_rate=0.3)
    model = HybridClassifier(features=features, classifier=head).fit(dataset.images, dataset.labels,
                                                                     groups=dataset.groups)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = model.save(Path(tmp) / "model")
        scan = save_image(dataset.images[0], Path(tmp) / "film.tif")
        viewer = napari.Viewer(show=True)
        (height,) = viewer.open(str(scan), plugin="hybridtmd")
        _, widget = viewer.window.add_plugin_dock_widget("hybridtmd", "Explain")
        widget.model_dir.value = model_dir
        viewer.layers.selection.active = height
        if widget.explain_selected() is None:
            raise SystemExit(f"the Explain widget failed: {widget.status.value}")
        viewer.canvas.overlays.scale_bar.visible = True
        viewer.window.resize(1400, 800)
        for _ in range(5):  # lay out the dock widget and the resized window before the picture
            use_app().process_events()
        viewer.reset_view()
        picture = Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)[..., :3])
        # 256 colours hold a screenshot of flat widgets and colormaps: a third of the RGB file's size
        picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            args.output, optimize=True)
        viewer.close()
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

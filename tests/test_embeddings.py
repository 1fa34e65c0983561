"""Frozen-CNN embeddings: real weights, preprocessing, D4 invariance, cache, batching, registry,
missing weights, scikit-learn API, CLI.

Small CNN inputs (64 px) wherever the property does not depend on the 224 px default, so the
module runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from typer.testing import CliRunner

from hybridtmd import embeddings as emb
from hybridtmd.cli import app
from hybridtmd.embeddings import (
    CacheWarning,
    CNNEmbedder,
    WeightsNotFoundError,
    create_backbone,
    list_backbones,
    register_backbone,
    unregister_backbone,
)
from hybridtmd.embeddings import embedder as embedder_module
from hybridtmd.embeddings.backbones import load_efficientnet_lite0
from hybridtmd.embeddings.inputs import d4_views
from hybridtmd.errors import HybridTMDError
from hybridtmd.io import AFMImage
from hybridtmd.preprocess import Preprocessor, normalise_height

SMALL = {"input_size": 64}


@pytest.fixture(scope="module")
def images(small_synthetic) -> list[AFMImage]:
    """Four levelled 64 px images of different classes."""
    picks = [0, 5, 11, 17]
    return Preprocessor().fit_transform([small_synthetic.images[i] for i in picks])


def _imagenet_input(rgb: np.ndarray) -> torch.Tensor:
    from skimage.transform import resize

    x = resize(rgb, (224, 224), anti_aliasing=True)  # float in [0, 1]
    x = (x - np.array(emb.backbones.IMAGENET_MEAN)) / np.array(emb.backbones.IMAGENET_STD)
    return torch.from_numpy(x.transpose(2, 0, 1)).float()[None]


def test_default_weights_are_real_imagenet_weights():
    """Random weights would not name a cat and an espresso: the bundled file is the real thing."""
    from skimage import data

    model = load_efficientnet_lite0(classifier=True)
    with torch.inference_mode():
        cat = int(model(_imagenet_input(data.chelsea())).argmax())
        coffee = int(model(_imagenet_input(data.coffee())).argmax())
    assert 281 <= cat <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert coffee == 967  # espresso


def test_registry_lists_default_and_resnets():
    names = list_backbones()
    assert {"efficientnet_lite0", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"} <= set(names)
    assert "efficientnet_lite0" in list_backbones(available_only=True)
    b = create_backbone("efficientnet_lite0")
    assert (b.embedding_dim, b.input_size) == (1280, 224)
    assert "sha256:" in b.weights_id
    with pytest.raises(ValueError, match="unknown backbone"):
        create_backbone("alexnet")


def test_normalisation_and_d4_views():
    h = np.linspace(0, 10, 100 * 100).reshape(100, 100)
    h[0, 0] = 1e4  # a dust particle must not squash the film's contrast
    u = normalise_height(h, (1, 99))
    assert u.min() == 0.0 and u.max() == 1.0 and 0.4 < np.median(u) < 0.6
    assert np.all(normalise_height(np.ones((40, 40)), flat_value=0.5) == 0.5)
    x = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(2, 3, 3)
    views = d4_views(x)
    assert views.shape == (8, 2, 3, 3) and torch.equal(views[0], x)
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8  # all distinct


def test_output_frame_and_determinism(images):
    a = CNNEmbedder(**SMALL).fit_transform(images)
    b = CNNEmbedder(**SMALL).transform(images)
    assert isinstance(a, pd.DataFrame) and a.shape == (4, 1280)
    assert list(a.columns[:2]) == ["latent_0000", "latent_0001"] and a.columns[-1] == "latent_1279"
    assert np.array_equal(a.to_numpy(), b.to_numpy())  # same input, bit-identical vector
    assert np.all(np.isfinite(a.to_numpy()))
    assert not np.allclose(a.iloc[0], a.iloc[1])  # different images, different vectors


def test_d4_embedding_is_rotation_and_mirror_invariant(images):
    originals = images[:2]
    rotated = [im.with_height(np.rot90(im.height)) for im in originals]
    mirrored = [im.with_height(im.height[:, ::-1]) for im in originals]
    d4 = CNNEmbedder(tta="d4", batch_size=16, **SMALL)
    ref = d4.transform(originals).to_numpy()
    np.testing.assert_allclose(d4.transform(rotated).to_numpy(), ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(d4.transform(mirrored).to_numpy(), ref, atol=1e-5, rtol=0)
    plain = CNNEmbedder(**SMALL)  # without TTA the rotation does change the vector
    assert np.abs(plain.transform(rotated).to_numpy() - plain.transform(originals).to_numpy()).max() > 1e-2


def test_batch_size_does_not_change_embeddings(images):
    ref = CNNEmbedder(batch_size=1, **SMALL).transform(images).to_numpy()
    for batch_size in (3, 64):
        out = CNNEmbedder(batch_size=batch_size, **SMALL).transform(images).to_numpy()
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_tiles_are_embedded_and_averaged(images):
    embedder = CNNEmbedder(tile_size_px=32, **SMALL)
    assert embedder.input_tensors(images[0]).shape == (4, 3, 64, 64)  # 64 px image -> 2 x 2 tiles
    assert CNNEmbedder(tile_size_px=32, tta="d4", **SMALL).input_tensors(images[0]).shape[0] == 32
    assert CNNEmbedder(tile_size_px=128, **SMALL).input_tensors(images[0]).shape[0] == 1  # smaller: whole
    tiled = embedder.transform(images[:1]).to_numpy()
    assert tiled.shape == (1, 1280) and not np.allclose(tiled, CNNEmbedder(**SMALL).transform(images[:1]))


def test_cache_hit_miss_invalidation_and_corrupt_entry(images, tmp_path, monkeypatch):
    first = CNNEmbedder(cache_dir=tmp_path, **SMALL)
    ref = first.transform(images).to_numpy()
    assert (first.n_computed_, first.n_cache_hits_) == (4, 0)
    entries = sorted(tmp_path.rglob("*.npz"))
    assert len(entries) == 4 and not list(tmp_path.rglob("*.tmp"))

    def no_model(*args, **kwargs):
        raise AssertionError("a fully cached run must not build the network")

    with monkeypatch.context() as m:  # second run: loads vectors, computes nothing
        m.setattr(embedder_module, "shared_model", no_model)
        second = CNNEmbedder(cache_dir=tmp_path, **SMALL)
        assert np.array_equal(second.transform(images).to_numpy(), ref)
        assert (second.n_computed_, second.n_cache_hits_) == (0, 4)

    changed = CNNEmbedder(cache_dir=tmp_path, clip_percentiles=(2.0, 98.0), **SMALL)  # any setting: new keys
    changed.transform(images)
    assert changed.n_computed_ == 4 and len(list(tmp_path.rglob("*.npz"))) == 8

    entries[0].write_bytes(entries[0].read_bytes()[:100])  # truncated entry
    again = CNNEmbedder(cache_dir=tmp_path, **SMALL)
    with pytest.warns(CacheWarning, match="recomputing"):
        out = again.transform(images).to_numpy()
    assert (again.n_computed_, again.n_cache_hits_) == (1, 3)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)  # recomputed alone: batch-size rounding only
    assert np.load(entries[0])["vector"].shape == (1280,)  # rewritten, usable again


def test_missing_resnet_weights_error_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsNotFoundError) as info:
        CNNEmbedder("resnet18", **SMALL).transform([AFMImage(np.random.default_rng(0).random((40, 40)), 1.0)])
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "never downloads" in message
    assert "resnet18" not in list_backbones(available_only=True)
    with pytest.raises(WeightsNotFoundError, match="not found"):
        create_backbone("resnet50", weights=tmp_path / "nope.pth")


def test_resnet_from_user_file_and_hub_cache(images, tmp_path, monkeypatch):
    """The loading path with a stand-in file (random weights; real ones are not on test machines)."""
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()
    user_file = tmp_path / "my_resnet18.pth"
    torch.save(state, user_file)
    out = CNNEmbedder("resnet18", weights=user_file, **SMALL).transform(images[:2])
    assert out.shape == (2, 512)
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    torch.save(state, hub / "checkpoints" / "resnet18-f37072fd.pth")  # right name, wrong content
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    with pytest.raises(HybridTMDError, match="corrupt or not torchvision's"):
        create_backbone("resnet18")


def test_register_any_module(images):
    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3), torch.nn.ReLU())  # feature maps: pooled to 5-d
    register_backbone("tiny_test_net", tiny, input_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_backbone("tiny_test_net", tiny)
        out = CNNEmbedder("tiny_test_net").transform(images)
        assert out.shape == (4, 5) and list(out.columns) == [f"latent_000{i}" for i in range(5)]
        assert create_backbone("tiny_test_net").weights_id.startswith("params:sha256:")
    finally:
        unregister_backbone("tiny_test_net")


def test_sklearn_clone_params_and_pca(images):
    embedder = CNNEmbedder("efficientnet_lite0", tta="d4", batch_size=7, cache_dir="/tmp/x", pca_components=3)
    params = embedder.get_params()
    assert params["tta"] == "d4" and params["batch_size"] == 7 and params["pca_components"] == 3
    assert "model" not in " ".join(params)  # the network is not a parameter
    twin = clone(embedder)
    assert twin.get_params() == params and twin is not embedder
    pca = CNNEmbedder(pca_components=3, **SMALL)
    with pytest.raises(NotFittedError):
        pca.transform(images)
    scores = pca.fit_transform(images)
    assert list(scores.columns) == ["pca_00", "pca_01", "pca_02"]
    assert list(pca.get_feature_names_out()) == ["pca_00", "pca_01", "pca_02"]
    np.testing.assert_allclose(pca.transform(images).to_numpy(), scores.to_numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="tta"):
        CNNEmbedder(tta="d8").transform(images)


def test_cli_embed_skips_bad_file(tmp_path):
    runner = CliRunner()
    data = tmp_path / "ds"
    result = runner.invoke(app, ["synth", str(data), "--n-samples", "5", "--images-per-sample", "1", "--size", "48"])
    assert result.exit_code == 0, result.output
    (data / "manifest.csv").unlink()  # labels and groups from file names, so the bad file is listed
    (data / "synthetic_MoS2_1.00um_0099_img0.tif").write_bytes(b"not a tiff")
    out = tmp_path / "emb.csv"
    result = runner.invoke(app, ["embed", str(data), "-o", str(out), "--input-size", "64", "--tta", "none"])
    assert result.exit_code == 1, result.output  # some files skipped, the rest written
    assert "synthetic_MoS2_1.00um_0099_img0.tif" in result.output and "cannot read" in result.output
    table = pd.read_csv(out)
    assert list(table.columns[:4]) == ["path", "label", "group", "latent_0000"] and table.shape == (5, 3 + 1280)
    assert not list(tmp_path.glob(".emb.csv*"))  # atomic write left no temporary


def test_cnn_inputs_and_descriptors_share_one_normalisation():
    """Issue 19: the descriptors' grey image and both CNN inputs (the hybrid's embedder and the
    fine-tuning baseline) clip heights to the same percentiles by default."""
    from hybridtmd.baseline import FineTuneClassifier
    from hybridtmd.descriptors import DescriptorConfig
    from hybridtmd.preprocess import NORMALISE_PERCENTILES

    assert tuple(CNNEmbedder().clip_percentiles) == NORMALISE_PERCENTILES
    assert tuple(FineTuneClassifier().clip_percentiles) == NORMALISE_PERCENTILES
    assert tuple(DescriptorConfig().normalise_percentiles) == NORMALISE_PERCENTILES

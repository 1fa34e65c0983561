"""Latent maps: where an embedding dimension fires, and that the maps pool back to the embedding."""

from __future__ import annotations

import numpy as np
import pytest

from hybridtmd.embeddings import CNNEmbedder, latent_maps
from hybridtmd.embeddings.backbones import pooled
from hybridtmd.embeddings.maps import conservative_resize, feature_map
from hybridtmd.io import AFMImage

DIMS = [3, 100, 517, 1279]


def bumps_in_top_left(n: int = 128, count: int = 25, seed: int = 0) -> AFMImage:
    """A flat film with Gaussian islands (σ = 3 px) only in the top-left quadrant."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    height = np.zeros((n, n))
    for cy, cx in rng.uniform(6, n // 2 - 6, (count, 2)):
        height += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0 ** 2))
    return AFMImage(height, (4.0, 4.0), source="quadrant.tif")


@pytest.fixture(scope="module")
def image() -> AFMImage:
    rng = np.random.default_rng(1)
    return AFMImage(rng.normal(0, 0.2, (72, 96)) + np.linspace(0, 1, 96)[None, :], (5.0, 5.0), source="r.tif")


@pytest.mark.parametrize("settings", [{}, {"tta": "d4"}, {"tile_size_px": 48}, {"tile_size_px": 32, "tta": "d4"}],
                         ids=["plain", "d4", "tiles", "tiles+d4"])
def test_maps_average_back_to_the_embedding(image, settings):
    embedder = CNNEmbedder(device="cpu", input_size=64, **settings)
    embedding = embedder.fit_transform([image]).to_numpy()[0]
    maps = latent_maps(embedder, image, DIMS)
    assert maps.maps.shape == (len(DIMS), *image.shape)
    assert maps.names == [f"latent__{d:04d}" for d in DIMS]
    np.testing.assert_allclose(maps.pooled, embedding[DIMS], rtol=1e-5, atol=1e-6)
    # the pooling identity on the image-sized maps (over the pixels the tiles cover)
    np.testing.assert_allclose(np.nanmean(maps.maps, axis=(1, 2)), embedding[DIMS], rtol=1e-5, atol=1e-6)
    if "tile_size_px" in settings:
        assert np.isnan(maps.maps[:, -1, :]).all()  # 72 px tall: the last rows lie in no complete tile


def test_pca_component_maps_pool_to_the_scores(image):
    rng = np.random.default_rng(2)
    images = [image] + [AFMImage(rng.normal(size=(64, 64)), (5.0, 5.0)) for _ in range(5)]
    embedder = CNNEmbedder(device="cpu", input_size=64, pca_components=3).fit(images)
    scores = embedder.transform([image]).to_numpy()[0]
    maps = latent_maps(embedder, image, ["latent__pca_00", 2])
    assert maps.names == ["latent__pca_00", "latent__pca_02"]
    np.testing.assert_allclose(maps.maps.mean(axis=(1, 2)), scores[[0, 2]], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("tta", ["none", "d4"])
def test_maps_of_the_most_varying_dimensions_sit_where_the_islands_are(tta):
    """Islands only in the top-left quadrant: the dimensions whose map varies most over the image
    respond there. With d4 TTA this also checks that every view's map is turned back correctly
    (a wrong inverse would move the response to another quadrant or smear it over all four)."""
    image = bumps_in_top_left()
    embedder = CNNEmbedder(device="cpu", tta=tta)
    maps = latent_maps(embedder, image, range(1280)).maps
    top = np.argsort(-maps.std(axis=(1, 2)))[:10]
    half = image.shape[0] // 2
    quadrants = np.stack([maps[top, :half, :half], maps[top, :half, half:], maps[top, half:, :half],
                          maps[top, half:, half:]]).mean(axis=(2, 3))  # (4, 10)
    assert (quadrants.argmax(axis=0) == 0).sum() >= 7
    assert (quadrants[0] / quadrants.sum(axis=0)).mean() > 0.33  # a quarter when spread evenly


def test_conservative_resize_keeps_the_mean_for_any_sizes():
    cells = np.random.default_rng(3).normal(size=(2, 7, 7))
    out = conservative_resize(cells, (101, 37))
    assert out.shape == (2, 101, 37)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), cells.mean(axis=(1, 2)), rtol=1e-12)
    same = conservative_resize(cells, (7, 7))
    np.testing.assert_allclose(same, cells)


def test_a_torchvision_resnet_gives_its_layer4_map():
    import torch

    from hybridtmd.embeddings.backbones import build_architecture

    module = pooled(build_architecture("resnet18"))
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        fmap = feature_map(module, x)
        assert fmap.shape == (2, 512, 2, 2)
        torch.testing.assert_close(fmap.mean(dim=(2, 3)), module(x), rtol=1e-5, atol=1e-5)


def test_a_module_without_a_map_is_a_clear_error():
    import torch

    with pytest.raises(TypeError, match="not a feature map"):
        feature_map(pooled(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(4))), torch.zeros(1, 3, 8, 8))


def test_bad_dimensions_and_models_are_clear_errors(image):
    embedder = CNNEmbedder(device="cpu", input_size=64)
    with pytest.raises(IndexError, match="out of range"):
        latent_maps(embedder, image, [1280])
    with pytest.raises(ValueError, match="not a latent dimension"):
        latent_maps(embedder, image, ["phys__sq_nm"])
    with pytest.raises(TypeError, match="no fitted CNN embedder"):
        latent_maps(object(), image, [0])


def test_a_fitted_model_levels_the_image_as_its_features_do(image):
    from hybridtmd.model import HybridFeatures

    features = HybridFeatures(descriptors=None, embedder=CNNEmbedder(device="cpu", input_size=64))
    table = features.fit_transform([image])
    maps = latent_maps(features, image, ["latent__0100"])
    np.testing.assert_allclose(maps.pooled, table[["latent__0100"]].to_numpy()[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(maps.image.height, image.height)  # the levelled image, shown under the overlay

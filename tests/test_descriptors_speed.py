"""The speed paths of the descriptor pass (issue 30, item 4) change no value.

Each replaced library routine is compared with the library bit for bit on synthetic images
(random, smooth and 8-bit-quantised like the paper's input; several shapes, down to a few
pixels), and each default family is computed with the library routine patched back in (the
code before the change) and with the speed path: every descriptor value must be identical -
the replacements reproduce the library's arithmetic, so no tolerance is needed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.feature import blob_dog as skimage_blob_dog
from skimage.feature import canny as skimage_canny

from hybridtmd.datasets import make_synthetic_dataset
from hybridtmd.descriptors import DescriptorConfig
from hybridtmd.descriptors import paper as paper_module
from hybridtmd.descriptors import texture as texture_module
from hybridtmd.descriptors.core import Surface
from hybridtmd.descriptors.fast_filters import canny, correlate1d_taps, gaussian_weights
from hybridtmd.descriptors.registry import resolve_families
from hybridtmd.preprocess import level

SHAPES = ((64, 80), (33, 17), (5, 7), (3, 3), (2, 9), (1, 6))


def _images(rng, shape):
    """A random, a smooth, an 8-bit-quantised smooth image in [0, 1] and a rotated view (not
    C-contiguous)."""
    smooth = ndimage.gaussian_filter(rng.random(shape), 2)
    smooth = (smooth - smooth.min()) / np.ptp(smooth)
    return rng.random(shape), smooth, np.rint(smooth * 255) / 255, np.rot90(smooth)


@pytest.mark.parametrize("shape", SHAPES)
def test_canny_equals_skimage_bit_for_bit(shape):
    rng = np.random.default_rng(sum(shape))
    for img in _images(rng, shape):
        for sigma in (0.3, 0.2, 0.35, 0.1, 1.0):  # the last two: skimage's own path
            assert np.array_equal(canny(img, sigma), skimage_canny(img, sigma)), (shape, sigma)
        assert np.array_equal(canny(img, 0.3, 0.05, 0.3), skimage_canny(img, 0.3, 0.05, 0.3))


@pytest.mark.parametrize("shape", SHAPES)
def test_correlate1d_taps_equals_ndimage_bit_for_bit(shape):
    rng = np.random.default_rng(len(shape) + shape[0])
    kernels = [gaussian_weights(0.3), gaussian_weights(0.2), np.array([-1.0, 0.0, 1.0]), np.array([1.0, 2.0, 1.0])]
    for img in _images(rng, shape):
        for weights in kernels:
            for axis in (0, 1):
                for mode in ("constant", "reflect"):
                    ours = correlate1d_taps(img, weights, axis, mode)
                    assert np.array_equal(ours, ndimage.correlate1d(img, weights, axis, mode=mode))
    assert np.array_equal(gaussian_weights(1.0), ndimage.gaussian_filter1d(np.eye(9)[4], 1.0, mode="constant"))
    with pytest.raises(ValueError, match="symmetric"):
        correlate1d_taps(np.ones((5, 5)), [1.0, 2.0, 3.0], 0, "reflect")
    with pytest.raises(ValueError, match="3-tap"):
        correlate1d_taps(np.ones((5, 5)), gaussian_weights(1.0), 0, "reflect")


def _family_values(images, config):
    families = resolve_families("default")
    wanted = [n for fam in families for n in fam.names]
    rows = []
    for im in images:
        surface = Surface(im, config, wanted)
        rows.append({k: v for fam in families for k, v in fam.compute(surface).items()})
    return rows


def _graycoprops_each(glcm, props):
    from skimage.feature import graycoprops

    return {prop: graycoprops(glcm, prop) for prop in props}


def _assert_same(before, after):
    for row_before, row_after in zip(before, after, strict=True):
        assert row_before.keys() == row_after.keys()
        for name, value in row_before.items():
            other = row_after[name]
            assert (math.isnan(value) and math.isnan(other)) or value == other, name


@pytest.fixture(scope="module")
def levelled_images():
    data = make_synthetic_dataset(n_samples=5, images_per_sample=1, size_px=160, seed=3)
    return [level(im) for im in data.images]


@pytest.mark.parametrize("config", [DescriptorConfig(), DescriptorConfig.release_0_1_0()])
def test_default_families_unchanged_by_the_speed_paths(levelled_images, config, monkeypatch):
    """Every default descriptor, with the library routines (before) and the speed paths (after)."""
    after = _family_values(levelled_images, config)
    monkeypatch.setattr(paper_module, "canny", skimage_canny)
    monkeypatch.setattr(paper_module, "glcm_properties", _graycoprops_each)
    monkeypatch.setattr(texture_module, "glcm_properties", _graycoprops_each)
    monkeypatch.setattr(paper_module, "blob_dog", lambda image, low, high, threshold: skimage_blob_dog(
        image, min_sigma=low, max_sigma=high, threshold=threshold))
    before = _family_values(levelled_images, config)
    _assert_same(before, after)


def test_local_maxima_of_a_transposed_view_equal_peak_local_max():
    """The DoG stack's (row, col, level) view is searched in memory order: same peaks, same order."""
    from skimage.feature import peak_local_max

    from hybridtmd.descriptors.fast import local_maxima

    rng = np.random.default_rng(4)
    cube = np.round(ndimage.gaussian_filter(rng.random((5, 40, 30)), 1), 3)  # rounded: tied values
    for view in (cube.transpose(1, 2, 0), cube, cube.transpose(2, 0, 1), np.zeros((4, 4, 3))):
        expected = peak_local_max(view, threshold_abs=0.4, footprint=np.ones((3, 3, 3)), exclude_border=0)
        assert np.array_equal(local_maxima(view, 0.4), expected)
    flat = np.round(ndimage.gaussian_filter(rng.random((30, 20)), 1), 2).T
    assert np.array_equal(local_maxima(flat, 0.0),
                          peak_local_max(flat, threshold_abs=0.0, footprint=np.ones((3, 3)), exclude_border=0))


def test_glcm_properties_equal_graycoprops_bit_for_bit():
    from skimage.feature import graycomatrix, graycoprops

    from hybridtmd.descriptors.fast_glcm import glcm_properties

    rng = np.random.default_rng(6)
    props = ("contrast", "dissimilarity", "homogeneity", "energy", "ASM", "correlation", "entropy")
    for levels, image in ((256, rng.integers(0, 256, (40, 50))), (32, rng.integers(0, 32, (30, 20))),
                          (8, np.full((9, 9), 3))):  # a constant image: zero deviations
        glcm = graycomatrix(image.astype(np.uint8), [1, 2, 4], np.deg2rad([0, 45, 90, 135]), levels=levels,
                            symmetric=True, normed=True)
        ours = glcm_properties(glcm, props)
        for prop in props:
            assert np.array_equal(ours[prop], graycoprops(glcm, prop)), (levels, prop)
    with pytest.raises(ValueError, match="properties"):
        glcm_properties(glcm, ["mean_abs"])


@pytest.mark.parametrize("shape", SHAPES[:-1])
def test_sobel_equals_ndimage_up_to_the_sign_of_zero(shape):
    from hybridtmd.descriptors.fast_filters import sobel

    rng = np.random.default_rng(shape[1])
    for img in (*_images(rng, shape), np.zeros(shape), np.full(shape, -1.0)):
        for axis in (0, 1):
            assert np.array_equal(sobel(img, axis), ndimage.sobel(img, axis))  # -0.0 == 0.0

"""The descriptors' spatial maps (hybridtmd.descriptors.maps): the grain labels and DoG blobs
are the ones the descriptor values count, and they lie where the structures are, in nm."""

from __future__ import annotations

import numpy as np
import pytest

from hybridtmd.datasets import make_synthetic_dataset
from hybridtmd.descriptors import (
    DescriptorConfig,
    DescriptorExtractor,
    blob_positions,
    extract_descriptors,
    grain_labels,
)
from hybridtmd.descriptors.maps import BLOB_COLUMNS
from hybridtmd.descriptors.paper import dog_blob_count, dog_blobs
from hybridtmd.io import AFMImage

FAMILIES = ["grains", "morphology", "paper:all"]


@pytest.fixture(scope="module")
def images():
    """Synthetic films at pixel sizes above and below the 10 nm reference (resampled both ways)."""
    return make_synthetic_dataset(n_samples=4, images_per_sample=1, size_px=96, scan_size_um=(0.5, 1.4),
                                  materials=["MoS2", "WSe2"], seed=1).images


def disks(centres_nm, radius_nm, size_px=200, px=4.0, height=1.0) -> AFMImage:
    """Flat disks on a flat substrate; pixel (i, j) centred at (j, i) * px in the scan's frame."""
    c = np.arange(size_px) * px
    yy, xx = np.meshgrid(c, c, indexing="ij")
    z = np.zeros((size_px, size_px))
    for cx, cy in centres_nm:
        z[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius_nm**2] = height
    return AFMImage(z, (px, px), source="disks")


@pytest.mark.filterwarnings("ignore:.*coarser than the reference")
@pytest.mark.parametrize("config", [DescriptorConfig(), DescriptorConfig(reference_pixel_nm=None),
                                    DescriptorConfig(grain_threshold="otsu", min_grain_area_nm2=500.0)],
                         ids=["reference", "native", "otsu"])
def test_grain_labels_are_what_the_grain_descriptors_measure(images, config):
    table = DescriptorExtractor(families=["grains"], config=config).fit_transform(images)
    for image, (_, row) in zip(images, table.iterrows(), strict=True):
        grains = grain_labels(image, config)
        assert grains.count == row["grain_count"] > 0
        assert np.mean(grains.labels > 0) == pytest.approx(row["grain_coverage_fraction"], abs=1e-12)
        assert grains.threshold_nm == pytest.approx(row["grain_threshold_nm"], abs=1e-12)
        assert sorted(np.unique(grains.labels)) == list(range(grains.count + 1))  # consecutive labels
        # the grid spans the scan: its pixels times its shape is the scan size (x, y)
        spans = np.array(grains.pixel_size_nm) * grains.labels.shape[::-1]
        np.testing.assert_allclose(spans, image.size_nm, rtol=1e-9)
        if config.reference_pixel_nm is None:
            assert grains.labels.shape == image.shape and grains.origin_nm == (0.0, 0.0)
        else:
            assert max(abs(p - config.reference_pixel_nm) for p in grains.pixel_size_nm) < 0.1


def test_grains_lie_where_the_disks_are_in_scan_nm():
    centres = [(150.0, 200.0), (420.0, 560.0), (600.0, 180.0)]  # (x, y) nm, 4 nm pixels, 10 nm grid
    image = disks(centres, 60.0)
    grains = grain_labels(image, level_images=False)
    assert grains.count == 3 and grains.origin_nm == pytest.approx((3.0, 3.0))  # (10 - 4) / 2
    rows, cols = np.nonzero(grains.labels)
    found = []
    for k in range(1, 4):
        at = grains.labels[rows, cols] == k
        found.append((grains.origin_nm[0] + cols[at].mean() * grains.pixel_size_nm[0],
                      grains.origin_nm[1] + rows[at].mean() * grains.pixel_size_nm[1]))
    for centre in centres:  # each disk's grain centroid within a fifth of a reference pixel
        assert min(np.hypot(fx - centre[0], fy - centre[1]) for fx, fy in found) < 2.0
    area = np.pi * 60.0**2
    assert np.bincount(grains.labels.ravel())[1:] * np.prod(grains.pixel_size_nm) == pytest.approx([area] * 3,
                                                                                                       rel=0.05)


@pytest.mark.parametrize("method", ["fast", "2d"])
def test_blob_positions_are_the_blobs_the_descriptors_count(images, method):
    config = DescriptorConfig(blob_method=method)
    for image in images:
        values = extract_descriptors(image, FAMILIES, config)
        morphology = blob_positions(image, config)
        paper = blob_positions(image, config, family="paper")
        assert list(morphology.columns) == list(paper.columns) == BLOB_COLUMNS
        assert len(paper) == values["paper_dog_blob_count"] > 0
        assert len(morphology) / image.area_um2 == pytest.approx(values["morph_dog_blob_density_per_um2"], rel=1e-12)
        for blobs in (morphology, paper):  # inside the scanned area, sigmas of the 5-40 px scale space
            assert blobs["x_nm"].between(-image.pixel_size_nm[0], image.size_nm[0]).all()
            assert blobs["y_nm"].between(-image.pixel_size_nm[1], image.size_nm[1]).all()
            np.testing.assert_allclose(blobs["radius_nm"], np.sqrt(2) * blobs["sigma_nm"])
        assert morphology["sigma_nm"].between(49.0, 401.0).all()  # 5-40 reference pixels of ~10 nm


def test_a_bump_is_one_blob_at_its_place_with_its_size():
    """One Gaussian bump of sigma 80 nm at (x, y) = (300, 500) nm: one blob there, whichever
    detection (the fast one finds it on the 2x block mean and maps it back)."""
    px = 5.0
    c = np.arange(200) * px
    yy, xx = np.meshgrid(c, c, indexing="ij")
    image = AFMImage(2.0 * np.exp(-((xx - 300.0) ** 2 + (yy - 500.0) ** 2) / (2 * 80.0**2)), (px, px))
    for method in ("fast", "2d"):
        config = DescriptorConfig(blob_method=method)
        for family in ("morphology", "paper"):
            blobs = blob_positions(image, config, family=family, level_images=False)
            assert len(blobs) == 1, (method, family, blobs)
            x, y, sigma, _ = blobs.iloc[0]
            assert abs(x - 300.0) <= 10.0 and abs(y - 500.0) <= 10.0, (method, family, x, y)
            assert 40.0 <= sigma <= 160.0  # the scale space's step is a factor 1.6


def test_dog_blobs_count_is_dog_blob_count():
    rng = np.random.default_rng(4)
    from scipy import ndimage

    image = ndimage.gaussian_filter(rng.normal(size=(96, 96)), 6)
    image = (image - image.min()) / np.ptp(image)
    for method in ("fast", "2d", "paper"):
        blobs = dog_blobs(image, method)
        assert blobs.shape[1] == 3 and len(blobs) == dog_blob_count(image, method) > 0
        assert (blobs[:, :2] >= 0).all() and (blobs[:, 0] <= 96).all() and (blobs[:, 1] <= 96).all()


def test_a_flat_image_has_no_grains_and_no_blobs():
    flat = AFMImage(np.zeros((64, 64)), (8.0, 8.0))
    grains = grain_labels(flat)
    assert grains.count == 0 and np.isnan(grains.threshold_nm) and not grains.labels.any()
    for family in ("morphology", "paper"):
        blobs = blob_positions(flat, family=family)
        assert blobs.empty and list(blobs.columns) == BLOB_COLUMNS


def test_bad_input_is_one_clear_error():
    with pytest.raises(TypeError, match="AFMImage"):
        grain_labels(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="family must be"):
        blob_positions(AFMImage(np.zeros((32, 32)), (8.0, 8.0)), family="grains")

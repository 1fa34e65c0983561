"""Levelling: planes, line offsets, bow, scars, outliers, resampling, tiling, the transformer."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from hybridtmd.io import AFMImage
from hybridtmd.preprocess import (
    LevelConfig,
    Preprocessor,
    align_rows,
    clip_outliers,
    keep_long_runs,
    level,
    level_array,
    remove_polynomial_background,
    remove_scars,
    resample,
    tile,
)


def _terraced_surface(rows=96, cols=96):
    """Raised square domains (0.7 nm) on a flat substrate: what levelling must not distort."""
    h = np.zeros((rows, cols))
    h[20:50, 10:40] = 0.7
    h[60:90, 50:85] = 0.7
    h[30:70, 60:70] = 1.4
    return h


def test_tilted_plane_is_removed_below_1e6_nm():
    y, x = np.mgrid[0:100, 0:120]
    plane = 0.013 * x - 0.021 * y + 4.2
    out = level_array(plane)
    assert np.sqrt(np.mean(out**2)) < 1e-6


@pytest.mark.parametrize("method", ["median_diff", "median", "mean"])
def test_line_offsets_are_removed(method, rng):
    truth = _terraced_surface()
    offsets = rng.normal(0, 0.5, (truth.shape[0], 1))
    out = level_array(truth + offsets, LevelConfig(row_alignment=method, remove_scars=False))
    # up to a constant, the terraces come back exactly (no tilt was added)
    residual = out - truth
    assert np.ptp(residual) < 1e-9


def test_median_diff_beats_plain_median_where_coverage_changes_along_rows(rng):
    h = np.zeros((64, 64))
    h[:, :40] = 0.7  # rows where the film covers > half the line...
    h[32:, :] = 0.0
    h[32:, :20] = 0.7  # ... and rows where it covers less
    offsets = rng.normal(0, 0.3, (64, 1))
    plain = align_rows(h + offsets, "median")
    robust = align_rows(h + offsets, "median_diff")
    assert np.ptp(robust - h) < 1e-9
    assert np.ptp(plain - h) > 0.5  # plain medians shift the lower half by a whole step


def test_polynomial_bow_is_removed():
    y, x = np.mgrid[-1:1:80j, -1:1:90j]
    bow = 2.0 * (x**2 + y**2) + 0.3 * x * y + 0.5 * x**3
    out = remove_polynomial_background(bow, order=3)
    assert np.abs(out).max() < 1e-9
    assert np.abs(remove_polynomial_background(bow, order=1)).max() > 0.1


def test_background_fit_ignores_masked_features():
    y, x = np.mgrid[0:64, 0:64]
    plane = 0.01 * x
    features = np.zeros((64, 64))
    features[10:30, 10:30] = 5.0
    out = remove_polynomial_background(plane + features, 1, mask=features > 0)
    np.testing.assert_allclose(out, features, atol=1e-9)


def test_scars_are_interpolated_away(rng):
    truth = rng.normal(0, 0.05, (64, 64)) + _terraced_surface(64, 64)
    scarred = truth.copy()
    scarred[40, 5:50] += 1.5
    scarred[12:14, 20:60] -= 1.0  # a two-line scar
    out = remove_scars(scarred, threshold=3, min_length=16, max_width=2)
    assert np.abs(out - truth)[40, 5:50].mean() < 0.1
    assert np.abs(out - truth)[12:14, 20:60].mean() < 0.15
    untouched = np.ones_like(truth, bool)
    untouched[40] = untouched[12:14] = False
    np.testing.assert_array_equal(out[untouched], truth[untouched])


def test_clip_outliers_uses_robust_z(rng):
    h = rng.normal(0, 1, (64, 64))
    h[5, 5] = 100
    out = clip_outliers(h, z=6)
    assert out[5, 5] < 7 and out[5, 5] == out.max()
    assert np.count_nonzero(out != h) == 1


def test_level_image_keeps_units_and_records_config():
    y, x = np.mgrid[0:64, 0:64]
    image = AFMImage(_terraced_surface(64, 64) + 0.02 * x, (10.0, 10.0), source="t.tif")
    out = level(image)
    assert out.pixel_size_nm == (10.0, 10.0)
    assert out.source == "t.tif"
    assert out.metadata["levelling"]["row_alignment"] == "median_diff"
    assert np.median(out.height[out.height < 0.35]) == pytest.approx(0, abs=1e-9)  # substrate at 0
    assert np.median(out.height[(out.height > 0.35) & (out.height < 1.0)]) == pytest.approx(0.7, abs=1e-6)


def test_resample_changes_pixel_size_not_scan_size(rough_image):
    out = resample(rough_image, 10.0)
    assert out.shape == (32, 40)
    assert out.pixel_size_nm == pytest.approx((10.0, 10.0))
    assert out.size_nm == pytest.approx(rough_image.size_nm)
    assert resample(rough_image, 5.0) is rough_image
    levelled = level(rough_image, LevelConfig(pixel_size_nm=2.5))
    assert levelled.shape == (128, 160)


def test_tile_returns_complete_tiles_with_origins(rough_image):
    tiles = tile(rough_image, 32)
    assert len(tiles) == 2 * 2
    assert [t.metadata["tile_origin_px"] for t in tiles] == [[0, 0], [0, 32], [32, 0], [32, 32]]
    np.testing.assert_array_equal(tiles[3].height, rough_image.height[32:64, 32:64])
    assert len(tile(rough_image, 32, stride_px=16)) == 3 * 4


def test_level_config_validation_and_dict_round_trip():
    cfg = LevelConfig(background_order=2, row_alignment="polynomial")
    assert LevelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="background_order"):
        LevelConfig(background_order=5)
    with pytest.raises(ValueError, match="row_alignment"):
        LevelConfig(row_alignment="magic")
    with pytest.raises(ValueError, match="unknown levelling option"):
        LevelConfig.from_dict({"colour": "red"})


def test_preprocessor_is_a_stateless_sklearn_transformer(small_synthetic):
    pre = Preprocessor(LevelConfig(background_order=2), tile_size_px=32)
    assert clone(pre).get_params()["config"] == LevelConfig(background_order=2)
    out, tile_index = pre.fit(small_synthetic.images[:3]).transform_with_index(small_synthetic.images[:3])
    assert len(out) == 3 * 4
    assert tile_index.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    with pytest.raises(TypeError, match="expected AFMImage"):
        Preprocessor().fit_transform([np.zeros((4, 4))])


def test_levelling_is_close_to_idempotent(small_synthetic):
    once = level(small_synthetic.images[0])
    twice = level(once)
    assert np.sqrt(np.mean((twice.height - once.height) ** 2)) < 0.02 * once.height.std()


@pytest.mark.xfail(strict=True, reason="known limitation: with about a third of a line at spikes thousands of nm "
                   "high, the first pass leaves that line offset by ~8 noise sigmas; the second pass's scar "
                   "detection then takes the line for a scar and interpolates it, spikes included")
def test_levelling_idempotent_with_lines_crowded_by_spikes():
    """A counterexample hypothesis found to test_properties' idempotence bound, rebuilt from a seed."""
    rng = np.random.default_rng(30)
    h = rng.normal(0, 20, (48, 40))
    for row, fraction in ((0, 0.6), (1, 0.35)):
        h[row, rng.random(40) < fraction] += 7180
    spikes = rng.random((48, 40)) < 0.02
    h[spikes] += rng.choice([7180, 14360, -5400], spikes.sum())
    once = level_array(h)
    assert np.sqrt(np.mean((level_array(once) - once) ** 2)) <= 0.02 * once.std()


def test_keep_long_runs_is_the_opening_by_a_line():
    from scipy import ndimage

    rng = np.random.default_rng(4)
    for shape, density in (((60, 70), 0.9), ((40, 33), 0.5), ((3, 17), 0.97), ((1, 16), 1.0)):
        mask = rng.random(shape) < density
        for length in (2, 5, 16):
            expected = ndimage.binary_opening(mask, structure=np.ones((1, length), bool))
            assert np.array_equal(keep_long_runs(mask, length), expected), (shape, density, length)

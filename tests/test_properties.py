"""Issue 9, property-based tests (hypothesis): descriptors never raise on any finite 2-D array of at
least 32x32 pixels (every value finite, or NaN with a recorded reason), and levelling is
idempotent within the bound of tests/test_preprocess.py (2 % of the levelled rms)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hybridtmd.descriptors import DescriptorExtractor, extract_descriptors
from hybridtmd.io import AFMImage
from hybridtmd.preprocess import level, level_array

# derandomize: CI sees the same examples on every run (a property that fails does so reproducibly)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
SIDES = st.tuples(st.integers(32, 72), st.integers(32, 72))


@st.composite
def sparse_arrays(draw):
    """Mostly one value with a few others: constant maps, single spikes, lines, steps."""
    return draw(hnp.arrays(np.float64, SIDES, elements=st.floats(-1e4, 1e4, allow_subnormal=False),
                           fill=st.floats(-1e4, 1e4, allow_subnormal=False)))


@st.composite
def dense_arrays(draw):
    """Dense random maps of many kinds and scales (noise, integers, planes, terraces, scars)."""
    rows, cols = draw(SIDES)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1e-6, 1e-2, 1.0, 1e3, 1e6]))
    kind = draw(st.sampled_from(["normal", "uniform", "integers", "plane", "terraces", "scars", "lognormal"]))
    y, x = np.mgrid[0:rows, 0:cols]
    if kind == "normal":
        h = rng.normal(size=(rows, cols))
    elif kind == "uniform":
        h = rng.uniform(-1, 1, (rows, cols))
    elif kind == "integers":
        h = rng.integers(0, 3, (rows, cols)).astype(float)
    elif kind == "plane":
        h = rng.normal() * x + rng.normal() * y + 1e-3 * rng.normal(size=(rows, cols))
    elif kind == "terraces":
        h = np.floor((x + rng.uniform(0.1, 2) * y) / rng.integers(4, 20)) + rng.normal(0, 0.05, (rows, cols))
    elif kind == "scars":
        h = rng.normal(0, 0.1, (rows, cols))
        h[rng.integers(1, rows - 1), :] += rng.uniform(-5, 5)
    else:
        h = rng.lognormal(0, 2, (rows, cols))
    return h * scale


@st.composite
def noisy_sparse_arrays(draw):
    """A sparse map plus white noise at 0.1 % of its range (every measured map has noise)."""
    h = draw(sparse_arrays())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return h + rng.normal(0, 1e-3 * (np.ptp(h) or 1.0), h.shape)


ARRAYS = st.one_of(sparse_arrays(), dense_arrays())
#: maps with measurement noise: the domain of the idempotence bound (see the test's docstring)
NOISY_ARRAYS = st.one_of(noisy_sparse_arrays(), dense_arrays())


@SETTINGS
@given(height=ARRAYS, pixel=st.floats(0.05, 200.0))
def test_descriptors_are_finite_or_nan_with_a_reason(height, pixel):
    series = extract_descriptors(AFMImage(height, (pixel, pixel)))  # never raises
    values = series.to_numpy()
    assert values.dtype == np.float64 and not np.isinf(values).any()
    reasons = series.attrs["reasons"]
    missing = set(series.index[np.isnan(values)])
    assert missing == set(reasons), missing ^ set(reasons)  # every NaN, and only NaNs, has a reason
    assert all(isinstance(r, str) and r for r in reasons.values())


@settings(max_examples=5, deadline=None, derandomize=True)
@given(heights=st.lists(dense_arrays(), min_size=2, max_size=3))
def test_batch_extractor_never_raises_and_keeps_one_row_per_image(heights):
    images = [AFMImage(h, (2.0, 2.0)) for h in heights]
    extractor = DescriptorExtractor(families=["areal", "spectral", "grains"], n_jobs=1, progress=False)
    table, reasons = extractor.fit(images).transform_with_reasons(images)
    assert table.shape == (len(images), extractor.n_features_out_)
    nan_cells = {(i, c) for i, c in zip(*np.nonzero(table.isna().to_numpy()), strict=True)}
    recorded = {(r.image, table.columns.get_loc(r.feature)) for r in reasons.itertuples()}
    assert nan_cells == recorded


#: the bound of tests/test_preprocess.py::test_levelling_is_close_to_idempotent: the default
#: pipeline (scar removal, feature mask from the current heights, joint refit) is not exactly a
#: projection, so a second pass may move heights by up to 2 % of the levelled rms
IDEMPOTENCE_RMS_FRACTION = 0.02


@SETTINGS
@given(height=NOISY_ARRAYS)
def test_levelling_is_idempotent_within_two_percent_of_rms(height):
    """On maps with noise. Noise-free maps with isolated spikes are an exception (hypothesis finds
    them at once): the first pass leaves a residual offset on a spike's line, and on the second
    pass the robust noise of row differences is ~0, so scar detection takes that whole line for a
    scar and interpolates it away (spike included). Real AFM maps always carry noise."""
    once = level_array(height)
    twice = level_array(once)
    assert np.all(np.isfinite(once)) and once.shape == height.shape
    change = np.sqrt(np.mean((twice - once) ** 2))
    rounding = 1e-9 * max(1.0, float(np.abs(height).max()))  # float64 rounding at the input's scale
    assert change <= IDEMPOTENCE_RMS_FRACTION * once.std() + rounding, (change, once.std())


@settings(max_examples=10, deadline=None, derandomize=True)
@given(height=dense_arrays(), pixel=st.floats(0.5, 50.0))
def test_level_keeps_pixel_size_and_shape(height, pixel):
    image = AFMImage(height, (pixel, 2 * pixel), source="p.tif")
    out = level(image)
    assert out.shape == image.shape and out.pixel_size_nm == image.pixel_size_nm and out.source == "p.tif"
    assert out.metadata["levelled"] is True


def test_relevelling_a_flat_map_keeps_its_spikes():
    """Regression (found by the property above): a levelled piecewise-flat map has row differences
    at float rounding (1e-17 nm); scar detection used them as the noise level and replaced whole
    rows, spikes included, on the second pass. Scar limits now have a floor at 1e-9 of the range."""
    h = np.full((32, 32), 275.0)
    h[12, 18], h[20, 22], h[23, 12] = -7298.1, 3768.9, 507.1
    once = level_array(h)
    twice = level_array(once)
    assert np.allclose(twice, once, rtol=0, atol=1e-9 * np.ptp(h))
    assert twice[12, 18] < -7000

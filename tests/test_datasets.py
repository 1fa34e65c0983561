"""The synthetic TMD generator: determinism, class and sample structure, files on disk."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from hybridtmd.datasets import MATERIALS, load_example_dataset, make_synthetic_dataset, write_synthetic_dataset
from hybridtmd.datasets.morphology import Artefacts, class_counts
from hybridtmd.io import load_dataset
from hybridtmd.io.dataset import DEFAULT_FILENAME_PATTERN


def test_same_seed_same_images_different_seed_different():
    a = make_synthetic_dataset(n_samples=5, images_per_sample=1, size_px=48, seed=3)
    b = make_synthetic_dataset(n_samples=5, images_per_sample=1, size_px=48, seed=3)
    c = make_synthetic_dataset(n_samples=5, images_per_sample=1, size_px=48, seed=4)
    for x, y in zip(a.images, b.images, strict=True):
        np.testing.assert_array_equal(x.height, y.height)
    assert not np.allclose(a.images[0].height, c.images[0].height)


def test_class_counts_follow_paper_shares():
    counts = class_counts(100)
    assert counts == {"MoS2": 46, "WS2": 18, "WSe2": 13, "MoSe2": 13, "Mo-WSe2": 10}
    assert sum(class_counts(7).values()) == 7 and min(class_counts(7).values()) >= 1
    with pytest.raises(ValueError):
        class_counts(3)


def test_sample_structure(small_synthetic):
    d = small_synthetic
    assert len(d) == 20 and len(d.parameters) == 10
    per_group = Counter(d.groups.tolist())
    assert set(per_group.values()) == {2}
    for g in per_group:  # a sample has one label and one set of parameters
        members = np.flatnonzero(d.groups == g)
        assert len(set(d.labels[members])) == 1
        assert len({d.images[i].pixel_size_nm for i in members}) == 1
    assert set(d.labels) == set(MATERIALS)
    # images of one sample differ (new placement) but share the scan size
    first = np.flatnonzero(d.groups == d.groups[0])
    assert not np.allclose(d.images[first[0]].height, d.images[first[1]].height)


def test_within_sample_images_are_more_alike_than_between_samples():
    """The random effect that makes grouped CV necessary: compare simple statistics."""
    d = make_synthetic_dataset(n_samples=12, images_per_sample=3, size_px=64, seed=11,
                               materials=["MoS2"], artefacts=Artefacts.none())
    from hybridtmd.preprocess import level

    stat = np.array([np.percentile(level(im).height, 95) for im in d.images])
    groups = d.groups
    within = np.mean([stat[groups == g].var() for g in set(groups)])
    between = np.var([stat[groups == g].mean() for g in set(groups)])
    assert within < between


def test_variable_images_per_sample():
    d = make_synthetic_dataset(n_samples=6, images_per_sample=(1, 3), size_px=40, seed=1)
    sizes = Counter(d.groups.tolist()).values()
    assert min(sizes) >= 1 and max(sizes) <= 3


def test_written_dataset_loads_by_manifest_and_by_file_names(tmp_path):
    ds = write_synthetic_dataset(tmp_path, n_samples=5, images_per_sample=2, size_px=40, seed=2)
    assert len(ds) == 10
    assert (tmp_path / "samples.json").exists()
    import re

    assert all(re.match(DEFAULT_FILENAME_PATTERN, p.name) for p in ds.paths)
    (tmp_path / "manifest.csv").unlink()
    by_name = load_dataset(tmp_path)
    assert sorted(zip(by_name.labels, by_name.groups, strict=True)) == sorted(zip(ds.labels, ds.groups, strict=True))
    image = ds[0]
    assert image.shape == (40, 40)
    assert image.metadata["material"] == ds.labels[0]


def test_bundled_example_dataset():
    ds = load_example_dataset()
    assert len(ds) == 200
    assert len(set(ds.groups.tolist())) == 100
    assert ds.classes == sorted(MATERIALS)
    image = ds[0]
    assert image.shape == (128, 128)
    assert 1000 / 128 <= image.pixel_size_nm[0] <= 2500 / 128


def test_example_dataset_regenerates_identically(tmp_path):
    """A wheel install has no data/ folder: the regenerated set equals the bundled one."""
    bundled = load_example_dataset()
    regenerated = load_example_dataset(tmp_path)
    assert [p.name for p in regenerated.paths] == [p.name for p in bundled.paths]
    np.testing.assert_array_equal(regenerated[5].height, bundled[5].height)

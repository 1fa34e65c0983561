"""Shared fixtures: small synthetic surfaces and files written by hybridtmd's own writers."""

from __future__ import annotations

import sys

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")  # tests never open windows

from hybridtmd.io import AFMImage  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def own_state_dir(tmp_path_factory):
    """hybridtmd's list of models saved under this account (hybridtmd.model.persistence.state_dir)
    in a temporary folder: tests never write to the home directory."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
        yield


@pytest.fixture(autouse=True)
def _warnings_once_per_run_start_afresh():
    """Warnings given once per run (images coarser than the reference) warn again in each test."""
    extract = sys.modules.get("hybridtmd.descriptors.extract")
    if extract is not None:
        extract.reset_reference_warnings()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def rough_image(rng) -> AFMImage:
    """A 64 x 80 px random surface, 5 nm pixels, heights around 1 nm."""
    return AFMImage(rng.normal(1.0, 0.3, (64, 80)), (5.0, 5.0), source="rough.tif")


@pytest.fixture(scope="session")
def small_synthetic():
    """A tiny synthetic dataset (10 samples x 2 images, 64 px) shared by several tests."""
    from hybridtmd.datasets import make_synthetic_dataset

    return make_synthetic_dataset(n_samples=10, images_per_sample=2, size_px=64, seed=7)

"""Models saved by an earlier release load and predict as they did (tests/fixtures/), within the
reproducibility contract's cross-CPU bound: the fixtures' probabilities were computed on an AVX2
machine, and this one may have other kernels (docs/reproducibility.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from reproducibility import CROSS_ISA_BOUND

from hybridtmd.datasets import load_example_dataset
from hybridtmd.model import HybridClassifier

RELEASE = Path(__file__).parent / "fixtures" / "release_0.1.0"
EXPECTED = json.loads((RELEASE / "expected.json").read_text())


@pytest.fixture(scope="module")
def images():
    data = load_example_dataset()
    by_name = {p.name: i for i, p in enumerate(data.paths)}
    return list(data.subset([by_name[name] for name in EXPECTED["files"]]))


@pytest.mark.parametrize("name", sorted(EXPECTED["models"]))
def test_release_model_predicts_as_it_did(name, images):
    model = HybridClassifier.load(RELEASE / name)
    expected = EXPECTED["models"][name]
    assert [str(c) for c in model.classes_] == expected["classes"]
    np.testing.assert_allclose(model.predict_proba(images), expected["proba"], rtol=0, atol=CROSS_ISA_BOUND)

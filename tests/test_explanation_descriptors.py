"""Per-descriptor Shapley values for heads without trees: exact for the coarsened game, additive,
screening that finds the descriptor that matters, and the per-class sentences they give."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybridtmd import explanation as ex
from hybridtmd.explanation.descriptor_shapley import LATENT_PLAYER, REST_PLAYER
from hybridtmd.model import HybridClassifier, KernelSVMHead

COLUMNS = ["phys__sq_nm", "phys__sa_nm", "phys__grain_density_per_um2", "phys__str", "latent__0000", "latent__0001"]


class AdditiveModel:
    """p(B) = 0.5 + 0.2 tanh(sq_nm) - 0.1 tanh(str) + 0.05 tanh(latent__0000 + latent__0001): an
    additive game, whose interventional Shapley value of a player is exactly its term minus the
    term's background mean."""

    classes_ = np.array(["A", "B"])
    weights = {"phys__sq_nm": 0.2, "phys__str": -0.1}

    @staticmethod
    def latent_term(table: pd.DataFrame) -> np.ndarray:
        return 0.05 * np.tanh(table["latent__0000"] + table["latent__0001"]).to_numpy()

    def terms(self, table: pd.DataFrame) -> dict[str, np.ndarray]:
        return {c: w * np.tanh(table[c].to_numpy()) for c, w in self.weights.items()} | {
            LATENT_PLAYER: self.latent_term(table)}

    def predict_proba(self, table: pd.DataFrame) -> np.ndarray:
        p = 0.5 + sum(self.terms(table).values())
        return np.column_stack([1 - p, p])


@pytest.fixture(scope="module")
def table():
    return pd.DataFrame(np.random.default_rng(0).normal(size=(40, len(COLUMNS))), columns=COLUMNS)


def test_values_are_exact_for_the_coarsened_game(table):
    model = AdditiveModel()
    background = table.iloc[20:]
    explained = ex.descriptor_shapley(model, table.iloc[:20], top=1, background=background, max_background=20)
    assert list(explained.feature_names) == ["phys__sq_nm", REST_PLAYER, LATENT_PLAYER]  # screening: sq_nm first
    expected = {name: term - term_b.mean() for (name, term), term_b in
                zip(model.terms(table.iloc[:20]).items(), model.terms(background).values(), strict=True)}
    values = explained.values[:, :, 1]
    np.testing.assert_allclose(values[:, 0], expected["phys__sq_nm"], atol=1e-12)
    np.testing.assert_allclose(values[:, 1], expected["phys__str"], atol=1e-12)  # the rest block: its one live term
    np.testing.assert_allclose(values[:, 2], expected[LATENT_PLAYER], atol=1e-12)
    np.testing.assert_allclose(explained.data[:, 0], table["phys__sq_nm"].iloc[:20])
    assert np.isnan(explained.data[:, 1:]).all()


def test_screening_ranks_descriptors_by_what_they_do(table):
    scores = ex.screen_descriptors(AdditiveModel(), table, background=table, max_background=40)
    assert list(scores.index[:2]) == ["phys__sq_nm", "phys__str"]
    assert scores[["phys__sa_nm", "phys__grain_density_per_um2"]].max() < 1e-12  # the model ignores them


@pytest.fixture(scope="module")
def svm():
    rng = np.random.default_rng(2)
    labels = np.repeat(["A", "B", "C"], 30)
    planted = pd.DataFrame(rng.normal(size=(len(labels), len(COLUMNS))), columns=COLUMNS)
    planted.loc[labels == "B", "phys__sq_nm"] += 3.0
    planted.loc[labels == "C", "latent__0001"] += 3.0
    model = HybridClassifier(features=None, classifier=KernelSVMHead(C_grid=(1.0,), gamma_grid=(0.5,)))
    return model.fit(planted, labels, groups=np.arange(len(labels)) // 2), planted


def test_svm_descriptor_values_add_up_to_its_probabilities(svm):
    model, planted = svm
    explained = ex.descriptor_shapley(model, planted.iloc[::3], top=2, max_background=16)
    assert explained.values.shape == (30, 4, 3) and "phys__sq_nm" in explained.feature_names
    np.testing.assert_allclose(explained.values.sum(axis=1) + explained.base_values,
                               model.predict_proba(planted.iloc[::3]), atol=1e-10)


def test_the_svm_head_gets_per_descriptor_sentences(svm):
    model, planted = svm
    explained = ex.explain_set(model, planted, max_background=16, top_descriptors=3)
    assert explained.method == "group_shapley" and explained.descriptor_values is not None
    stories = ex.class_stories(explained.descriptor_values, explained.predicted)
    toward_b = stories[stories["class"] == "B"]
    assert toward_b["descriptor"].iloc[0] == "phys__sq_nm" and toward_b["direction"].iloc[0] == "higher"
    assert toward_b["sentence"].iloc[0].startswith("higher sq nm (nm) → B")

"""Latent-physical links: computed at fit on the training rows, saved with the model, used by the
explanations, checked at load; older models without them still load and explain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from corpus.tampering import forge_manifest
from scipy import stats

from hybridtmd import explanation as ex
from hybridtmd._utils.digests import file_sha256
from hybridtmd.model import HybridClassifier, ModelFileError, default_head, latent_correlates
from hybridtmd.model.links import LINK_COLUMNS

RELEASE = Path(__file__).parent / "fixtures" / "release_0.1.0"


def linked_table(seed: int = 0, n: int = 80) -> tuple[pd.DataFrame, np.ndarray]:
    """latent__0000 tracks grain density on the first half of the rows and sq_nm (negatively) on
    the second half; latent__0001 is noise; a few missing descriptor values."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(rng.normal(size=(n, 4)), columns=["phys__sq_nm", "phys__grain_density_per_um2",
                                                           "latent__0000", "latent__0001"])
    half = np.arange(n) < n // 2
    table.loc[half, "latent__0000"] = table.loc[half, "phys__grain_density_per_um2"] + 0.2 * rng.normal(size=half.sum())
    table.loc[~half, "latent__0000"] = -table.loc[~half, "phys__sq_nm"] + 0.2 * rng.normal(size=(~half).sum())
    table.loc[[3, 50], "phys__sq_nm"] = np.nan
    labels = np.where(rng.random(n) < 0.5, "MoS2", "WS2")
    return table, labels


def small_model() -> HybridClassifier:
    return HybridClassifier(features=None, classifier=default_head(0, n_jobs=1).set_params(n_estimators=10))


@pytest.fixture(scope="module")
def fitted():
    table, labels = linked_table()
    train = np.arange(len(table)) < len(table) // 2
    return small_model().fit(table[train], labels[train]), table, labels, train


def test_links_are_computed_from_the_training_rows_only(fitted):
    model, table, _, train = fitted
    links = model.latent_links_.set_index("latent")
    assert list(model.latent_links_.columns) == LINK_COLUMNS
    assert links.loc["latent__0000", "descriptor"] == "phys__grain_density_per_um2"
    assert links.loc["latent__0000", "unit"] == "per µm²" and links.loc["latent__0000", "n"] == train.sum()
    pd.testing.assert_frame_equal(model.latent_links_, latent_correlates(table[train]))
    # on the whole table (or the other rows) the dimension tracks another descriptor
    assert latent_correlates(table[~train]).set_index("latent").loc["latent__0000", "descriptor"] == "phys__sq_nm"
    # an explanation of the other rows names the dimension by the stored (training) link
    explained = ex.explain_set(model, table[~train].reset_index(drop=True))
    pd.testing.assert_frame_equal(explained.correlates, model.latent_links_)
    assert "grain_density_per_um2 [µm⁻²]" in ex.latent_label("latent__0000", explained.correlates)


def test_link_statistics_are_scipy_spearman_on_pairwise_complete_rows(fitted):
    _, table, _, _ = fitted
    links = latent_correlates(table).set_index("latent")
    descriptor = links.loc["latent__0000", "descriptor"]
    rows = table[["latent__0000", descriptor]].dropna()
    expected = stats.spearmanr(rows["latent__0000"], rows[descriptor])
    assert links.loc["latent__0000", "spearman_rho"] == pytest.approx(expected.statistic, abs=1e-12)
    assert links.loc["latent__0001", "descriptor"] is None and np.isnan(links.loc["latent__0001", "spearman_rho"])
    assert links.loc["latent__0000", "n"] == len(table)  # the largest pairwise-complete count of the column


def test_saved_and_loaded_model_has_identical_links(fitted, tmp_path):
    model, table, _, _ = fitted
    model.save(tmp_path / "m")
    loaded = HybridClassifier.load(tmp_path / "m")
    pd.testing.assert_frame_equal(loaded.latent_links_, model.latent_links_)
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["latent_links"] == {"alpha": 0.05, "rows": 2}
    np.testing.assert_array_equal(loaded.predict_proba(table), model.predict_proba(table))


def test_a_table_without_both_kinds_of_columns_stores_no_links(tmp_path):
    table, labels = linked_table()
    model = small_model().fit(table[["phys__sq_nm", "phys__grain_density_per_um2"]], labels)
    assert model.latent_links_ is None
    model.save(tmp_path / "m")
    assert HybridClassifier.load(tmp_path / "m").latent_links_ is None


def _forge_arrays(directory: Path, **changes: np.ndarray) -> None:
    """Rewrite arrays.npz with ``changes`` and forge the manifest to match (digest recomputed)."""
    path = directory / "arrays.npz"
    with np.load(path, allow_pickle=False) as saved:
        arrays = {name: saved[name] for name in saved.files}
    arrays |= changes
    np.savez(path, **arrays)
    manifest = json.loads((directory / "manifest.json").read_text())
    forge_manifest(directory, files=manifest["files"] | {"arrays.npz": file_sha256(path)})


@pytest.mark.parametrize(("changes", "match"), [
    ({"links__descriptor": np.array(["phys__str", ""])}, "not a physical column"),
    ({"links__latent": np.array(["latent__0001", "latent__0000"])}, "latent columns in order"),
    ({"links__spearman_rho": np.array([1.5, np.nan])}, "spearman_rho outside"),
    ({"links__q": np.array([0.01, 0.5])}, "not NaN where none is"),
    ({"links__n": np.array([10_000, 40])}, "n outside"),
])
def test_forged_links_are_refused_naming_the_file(fitted, tmp_path, changes, match):
    model, _, _, _ = fitted
    model.save(tmp_path / "m")
    _forge_arrays(tmp_path / "m", **changes)
    with pytest.raises(ModelFileError, match=rf"arrays\.npz: invalid latent links \(.*{match}"):
        HybridClassifier.load(tmp_path / "m")


def test_release_models_without_links_load_and_explain_with_links_computed_from_their_training_rows():
    model = HybridClassifier.load(RELEASE / "hybrid_xgboost")
    assert model.latent_links_ is None
    training = ex.shapley.background_table(model)
    explained = ex.explain_set(model, training.iloc[:4])
    pd.testing.assert_frame_equal(explained.correlates, latent_correlates(training))


def test_vectorised_links_equal_the_pairwise_correlation_table():
    rng = np.random.default_rng(5)
    n = 41
    table = pd.DataFrame(rng.normal(size=(n, 6)), columns=["phys__sq_nm", "phys__sa_nm", "phys__str",
                                                           "latent__0000", "latent__0001", "latent__0002"])
    table["latent__0001"] = 0.5 * table["phys__sa_nm"] + 0.3 * rng.normal(size=n)
    table["latent__0002"] = np.round(table["phys__str"])  # ties
    table.iloc[rng.choice(n, 4, replace=False), 0] = np.nan
    table.iloc[rng.choice(n, 3, replace=False), 3] = np.nan  # a latent column with missing values too
    links = latent_correlates(table).set_index("latent")
    pairs = ex.correlation_table(table.filter(like="latent__"), table.filter(like="phys__"))
    for latent, rows in pairs.groupby("x"):
        significant = rows[rows["spearman_q"] < 0.05]
        if not len(significant):
            assert links.loc[latent, "descriptor"] is None
            continue
        best = significant.loc[significant["spearman_rho"].abs().idxmax()]
        assert links.loc[latent, "descriptor"] == best["y"]
        for column, reference in (("spearman_rho", "spearman_rho"), ("pearson_r", "pearson_r"), ("q", "spearman_q")):
            assert links.loc[latent, column] == pytest.approx(best[reference], rel=1e-10, abs=1e-12)
    assert links["n"].tolist() == pairs.groupby("x")["n"].max().loc[links.index].tolist()

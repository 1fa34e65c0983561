"""Explanations: TreeSHAP additivity, names with units, grouped sums, a separating descriptor ranking
first, correlations against scipy, the paper's PCA analysis, figures and the HTML report."""

from __future__ import annotations

import base64

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import shap
from scipy import stats

from hybridtmd import explanation as ex
from hybridtmd.model import HybridClassifier, default_head
from hybridtmd.reporting import write_report

PHYSICAL = ["grain_density_per_um2", "sq_nm", "str", "paper_domain_density_per_px", "paper_dog_blob_count",
            "paper_local_variation"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def small_head():
    return default_head(0, n_jobs=1).set_params(n_estimators=30, learning_rate=0.3)


def make_table(labels: np.ndarray, rng: np.random.Generator, n_latent: int = 12) -> pd.DataFrame:
    """Physical columns (noise; a few NaN) and latent columns; latent__0000 tracks grain density."""
    table = pd.DataFrame(rng.normal(size=(len(labels), len(PHYSICAL))), columns=["phys__" + c for c in PHYSICAL])
    table.iloc[::11, 1] = np.nan
    latent = rng.normal(size=(len(labels), n_latent))
    latent[:, 0] += 2 * table["phys__grain_density_per_um2"].to_numpy()
    return table.join(pd.DataFrame(latent, columns=[f"latent__{j:04d}" for j in range(n_latent)]))


@pytest.fixture(scope="module")
def multiclass():
    """A calibrated 3-class model on a table where grain density separates WSe2."""
    rng = np.random.default_rng(0)
    labels = np.repeat(["MoS2", "WS2", "WSe2"], 20)
    table = make_table(labels, rng)
    table["phys__grain_density_per_um2"] += 3.0 * (labels == "WSe2")
    model = HybridClassifier(features=None, classifier=small_head(), calibration="temperature", calibration_folds=3,
                             ood_neighbors=None).fit(table, labels)
    return model, table, labels, ex.explain(model, table)


@pytest.fixture(scope="module")
def binary():
    """Two classes that differ in one physical column only (sq_nm); everything else is noise."""
    rng = np.random.default_rng(1)
    labels = np.repeat(["MoS2", "WSe2"], 30)
    table = make_table(labels, rng)
    table["phys__sq_nm"] = np.where(labels == "WSe2", 2.0, 1.0) + rng.normal(0, 0.1, len(labels))
    model = HybridClassifier(features=None, classifier=small_head(), ood_neighbors=None).fit(table, labels)
    return model, table, labels, ex.explain(model, table)


def test_multiclass_shap_adds_up_to_the_margin(multiclass):
    model, table, _, expl = multiclass
    n, f, k = len(table), table.shape[1], len(model.classes_)
    assert expl.values.shape == (n, f, k) and expl.base_values.shape == (n, k)
    assert list(expl.feature_names) == list(table.columns)
    assert list(expl.output_names) == list(model.classes_)
    margin = model.classifier_.predict(table.to_numpy(), output_margin=True)
    np.testing.assert_allclose(expl.values.sum(axis=1) + expl.base_values, margin, atol=1e-4)
    np.testing.assert_array_equal(model.classes_[ex.attributions.predicted_class_index(expl)], model.predict(table))


def test_binary_shap_is_one_margin(binary):
    model, table, _, expl = binary
    assert expl.values.shape == table.shape and expl.base_values.shape == (len(table),)
    assert expl.output_names == "WSe2"  # the log-odds of classes_[1]
    margin = model.classifier_.predict(table.to_numpy(), output_margin=True)
    np.testing.assert_allclose(expl.values.sum(axis=1) + expl.base_values, margin, atol=1e-4)
    assert ex.attributions.class_explanation(expl, "WSe2") is expl


def test_calibrated_explanation_is_the_margin_over_temperature(multiclass):
    model, table, _, expl = multiclass
    calibrated = ex.explain(model, table, calibrated=True)
    np.testing.assert_allclose(calibrated.values * model.temperature_, expl.values, rtol=1e-12)
    proba = np.exp(ex.attributions.margins(calibrated))
    np.testing.assert_allclose(proba / proba.sum(axis=1, keepdims=True), model.predict_proba(table), atol=1e-5)


def test_every_shap_plot_works_on_class_slices(multiclass):
    _, _, _, expl = multiclass
    for k, name in enumerate(expl.output_names):
        sliced = ex.attributions.class_explanation(expl, name)
        np.testing.assert_array_equal(sliced.values, expl[:, :, k].values)
        shap.plots.beeswarm(sliced, show=False)
        shap.plots.bar(sliced, show=False)
        shap.plots.waterfall(sliced[0], show=False)
        plt.close("all")
    with pytest.raises(KeyError, match="unknown class"):
        ex.attributions.class_explanation(expl, "GaN")


def test_names_carry_units():
    assert ex.names.format_unit("per µm²") == "µm⁻²" and ex.names.format_unit("per px") == "px⁻¹"
    assert ex.names.format_unit("1") == "" and ex.names.format_unit("nm") == "nm"
    names = ex.names.display_names(["phys__grain_density_per_um2", "phys__ssk", "latent__0412"])
    assert names == {"phys__grain_density_per_um2": "grain_density_per_um2 [µm⁻²]", "phys__ssk": "ssk",
                     "latent__0412": "latent__0412"}


def test_grouped_sums_equal_the_sums_of_their_members(multiclass):
    model, _, _, expl = multiclass
    grouped = ex.group_attributions(expl, model.feature_groups_)
    columns = list(expl.feature_names)
    for group, members in model.feature_groups_.items():
        idx = [columns.index(c) for c in members]
        for k, cls in enumerate(expl.output_names):
            rows = grouped.per_image[(grouped.per_image["group"] == group) & (grouped.per_image["class"] == cls)]
            np.testing.assert_allclose(rows["abs_shap"], np.abs(expl.values[:, idx, k]).sum(axis=1))
            np.testing.assert_allclose(rows["signed_shap"], expl.values[:, idx, k].sum(axis=1))
            assert grouped.global_abs.loc[group, cls] == pytest.approx(rows["abs_shap"].mean())
    np.testing.assert_allclose(grouped.share.sum(axis=1), 1.0)
    assert set(grouped.share.columns) == {"physical", "latent"}
    with pytest.raises(ValueError, match="more than one group"):
        ex.group_attributions(expl, {"a": columns[:2], "b": columns[1:3]})


def test_the_separating_descriptor_ranks_first(binary):
    _, _, _, expl = binary
    importance = ex.feature_importance(expl)
    assert importance.index[0] == "phys__sq_nm"
    assert importance["total"].iloc[0] > 3 * importance["total"].iloc[1]


def test_correlation_table_matches_scipy():
    rng = np.random.default_rng(2)
    x = pd.DataFrame(rng.normal(size=(40, 3)), columns=list("abc"))
    y = pd.DataFrame({"u": x["a"] + rng.normal(0, 0.5, 40), "v": rng.normal(size=40), "w": 1.0})
    x.iloc[[3, 7], 1] = np.nan
    table = ex.correlation_table(x, y).set_index(["x", "y"])
    for (cx, cy), row in table.drop(index="w", level="y").iterrows():
        keep = x[cx].notna()
        r, p = stats.pearsonr(x.loc[keep, cx], y.loc[keep, cy])
        rho, p_s = stats.spearmanr(x.loc[keep, cx], y.loc[keep, cy])
        assert row["n"] == keep.sum()
        assert row["pearson_r"] == pytest.approx(r) and row["pearson_p"] == pytest.approx(p, rel=1e-6)
        assert row["spearman_rho"] == pytest.approx(rho) and row["spearman_p"] == pytest.approx(p_s, rel=1e-6)
    assert table.xs("w", level="y")["pearson_r"].isna().all()  # a constant column has no correlation
    finite = table["pearson_p"].notna()
    np.testing.assert_allclose(table.loc[finite, "pearson_q"],
                               stats.false_discovery_control(table.loc[finite, "pearson_p"], method="bh"))


def test_latent_driver_is_named_by_the_descriptor_it_tracks(multiclass):
    _, _, _, expl = multiclass
    links = ex.latent_physical_links(expl, top=12)  # every latent dimension, ranked for each class
    assert len(links.drivers) == 12 * 3 and set(links.drivers["rank"]) == set(range(1, 13))
    wse2 = links.drivers[(links.drivers["class"] == "WSe2") & (links.drivers["latent"] == "latent__0000")]
    assert len(wse2) == 1, links.drivers
    row = wse2.iloc[0]
    assert row["descriptor"] == "phys__grain_density_per_um2"
    data = pd.DataFrame(expl.data, columns=expl.feature_names)
    assert row["spearman_rho"] == pytest.approx(stats.spearmanr(data["latent__0000"],
                                                                data["phys__grain_density_per_um2"])[0])
    assert row["sentence"].startswith("latent__0000 (")
    assert "driver for WSe2) tracks grain_density_per_um2 [µm⁻²], ρ=0." in row["sentence"]
    assert set(links.correlations["y"]) == {"phys__" + c for c in PHYSICAL}


def test_pca_of_the_latent_block_against_the_paper_features():
    rng = np.random.default_rng(3)
    table = make_table(np.zeros(50), rng)
    table["latent__0005"] += 10 * table["phys__paper_local_variation"]  # the main axis of the latent block
    pca = ex.latent_pca_correlation(table, n_components=4)
    r = pca.matrix("pearson_r")
    assert list(r.index) == ["PC1", "PC2", "PC3", "PC4"] and list(r.columns) == list(ex.PAPER_FEATURES)
    assert abs(r.loc["PC1", "phys__paper_local_variation"]) > 0.9
    assert pca.matrix("pearson_q").loc["PC1", "phys__paper_local_variation"] < 1e-6
    assert pca.scores.shape == (50, 4) and pca.explained_variance_ratio.is_monotonic_decreasing


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
    pixels = plt.imread(path)
    assert pixels.std() > 0.01  # not a blank canvas


def test_figures_are_non_empty_pngs(multiclass, rough_image, tmp_path):
    model, table, labels, expl = multiclass
    grouped = ex.group_attributions(expl, model.feature_groups_)
    pca = ex.latent_pca_correlation(table, n_components=3)
    figures = {
        "beeswarm": ex.plot_beeswarm(expl, "WSe2"),
        "bar": ex.plot_top_features(expl),
        "waterfall": ex.plot_waterfall(expl, 0),
        "groups": ex.plot_group_attribution(grouped),
        "heatmap": ex.plot_correlation_heatmap(pca.matrix(), pca.matrix("pearson_q")),
        "pca": ex.plot_pca_scatter(pca, labels),
        "image": ex.plot_image_explanation(rough_image, expl, 0),
    }
    for name, fig in figures.items():
        fig.savefig(tmp_path / f"{name}.png")
        plt.close(fig)
        assert_png(tmp_path / f"{name}.png")


def test_report_html_embeds_every_figure(multiclass, tmp_path):
    model, table, labels, _ = multiclass
    page = write_report(model, table, tmp_path, labels=labels, max_images=1)
    text = page.read_text(encoding="utf-8")
    pngs = sorted(tmp_path.glob("*.png"))
    names = {p.name for p in pngs}
    assert names >= {"confusion_matrix.png", "group_attribution.png", "beeswarm_WSe2.png", "pca_paper_heatmap.png",
                     "pca_scatter.png"}
    assert any(n.endswith("_groups.png") for n in names) and any(n.endswith("_drill_down.png") for n in names)
    for png in pngs:
        assert base64.b64encode(png.read_bytes()).decode("ascii") in text, png.name
    assert "<img" in text and "src='data:image/png;base64," in text
    links = pd.read_csv(tmp_path / "latent_correlates.csv").set_index("latent")
    assert links.loc["latent__0000", "descriptor"] == "phys__grain_density_per_um2"
    assert len(pd.read_csv(tmp_path / "predictions.csv")) == len(table)


def test_treeshap_is_only_asked_of_a_head_with_trees_and_explain_serves_any_other(multiclass):
    from sklearn.linear_model import LogisticRegression

    _, table, labels, _ = multiclass
    model = HybridClassifier(features=None, classifier=LogisticRegression(), ood_neighbors=None).fit(
        table.fillna(0), labels)
    with pytest.raises(TypeError, match="XGBoost head"):
        ex.explain(model, table.fillna(0), method="treeshap")
    with pytest.raises(ValueError, match="background"):  # no training rows kept, none given
        ex.explain(model, table.fillna(0))
    explained = ex.explain(model, table.fillna(0).iloc[:5], background=table.fillna(0), max_background=8, top=2)
    assert explained.method == "descriptor_shapley" and explained.unit == "probability"
    np.testing.assert_allclose(explained.values.sum(axis=1) + explained.base_values,
                               model.predict_proba(table.fillna(0).iloc[:5]), atol=1e-10)
    assert multiclass[3].method == "treeshap" and multiclass[3].unit == "margin (log-odds)"


def test_explain_command_writes_the_report(multiclass, tmp_path):
    from typer.testing import CliRunner

    from hybridtmd.cli import app

    model, table, labels, _ = multiclass
    model.save(tmp_path / "model")
    table.assign(label=labels).to_csv(tmp_path / "features.csv", index=False)
    result = CliRunner().invoke(app, ["explain", str(tmp_path / "model"), str(tmp_path / "features.csv"), "-o",
                                      str(tmp_path / "report"), "--max-images", "1"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    for png in (tmp_path / "report").glob("*.png"):
        assert base64.b64encode(png.read_bytes()).decode("ascii") in text, png.name
    table.drop(columns="phys__sq_nm").to_csv(tmp_path / "short.csv", index=False)
    result = CliRunner().invoke(app, ["explain", str(tmp_path / "model"), str(tmp_path / "short.csv")])
    assert result.exit_code == 2 and "phys__sq_nm" in result.output


def test_report_on_images_shows_each_image_beside_its_explanation(small_synthetic, tmp_path):
    from hybridtmd.model import HybridFeatures

    model = HybridClassifier(features=HybridFeatures(embedder=None), classifier=small_head(), ood_neighbors=None)
    model.fit(small_synthetic.images, small_synthetic.labels, groups=small_synthetic.groups)
    page = write_report(model, small_synthetic.images[:6], tmp_path, max_images=1)
    [height_map] = tmp_path.glob("card_*_height_map.png")
    assert_png(height_map)
    assert base64.b64encode(height_map.read_bytes()).decode("ascii") in page.read_text("utf-8")
    assert "synthetic_" in pd.read_csv(tmp_path / "predictions.csv")["image"].iloc[0]

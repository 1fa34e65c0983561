"""Group attribution for every head (exact group Shapley, TreeSHAP group sums), latent correlates,
nearest examples and the per-class sentences."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from hybridtmd import explanation as ex
from hybridtmd.model import HybridClassifier, KernelSVMHead, default_head

COLUMNS = ["phys__sq_nm", "phys__sa_nm", "phys__grain_density_per_um2", "phys__str", "latent__0000",
           "latent__0001", "latent__0002"]


def planted_table(seed: int = 0, n_per_class: int = 30) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Three classes: B has a higher sq_nm (areal), C a higher latent__0001; two images per sample."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(["A", "B", "C"], n_per_class)
    table = pd.DataFrame(rng.normal(size=(len(labels), len(COLUMNS))), columns=COLUMNS)
    table.loc[labels == "B", "phys__sq_nm"] += 3.0
    table.loc[labels == "C", "latent__0001"] += 3.0
    table["latent__0002"] = 0.9 * table["phys__grain_density_per_um2"] + 0.3 * rng.normal(size=len(labels))
    return table, labels, np.arange(len(labels)) // 2


@pytest.fixture(scope="module")
def svm_model():
    table, labels, samples = planted_table()
    return HybridClassifier(features=None, classifier=KernelSVMHead(C_grid=(1.0, 10.0), gamma_grid=(1.0,))).fit(
        table, labels, groups=samples), table, labels, samples


@pytest.fixture(scope="module")
def tree_model():
    table, labels, samples = planted_table(1)
    head = default_head(0, n_jobs=1).set_params(n_estimators=40, learning_rate=0.3)
    return HybridClassifier(features=None, classifier=head).fit(table, labels, groups=samples), table, labels, samples


def test_group_shapley_of_the_svm_head_adds_up_to_its_probabilities(svm_model):
    model, table, _, _ = svm_model
    result = ex.group_explanation(model, table.iloc[:6])
    assert result.method == "group_shapley" and result.features is None
    groups = result.groups
    assert list(groups.feature_names) == ["areal", "grains", "spectral", "latent"]
    assert groups.values.shape == (6, 4, 3)
    np.testing.assert_allclose(groups.values.sum(axis=1) + groups.base_values, model.predict_proba(table.iloc[:6]),
                               atol=1e-10)


def test_group_shapley_answers_physical_vs_latent_for_the_svm_head(svm_model):
    model, table, labels, _ = svm_model
    shares = ex.figures.group_shares(ex.group_shapley(model, table))
    assert shares.loc["B"].idxmax() == "areal"  # B differs in sq_nm only
    assert shares.loc["C"].idxmax() == "latent"  # C differs in latent__0001 only


def test_explain_serves_the_svm_head_with_exact_shapley_values_saying_so(svm_model):
    """The head classifier="auto" picks on embeddings is explainable by the default call (issue 26):
    per-descriptor Shapley values of its probabilities, one shap.Explanation type that names its method."""
    import pickle

    import matplotlib.pyplot as plt
    import shap

    import hybridtmd as ht

    model, table, _, _ = svm_model
    explained = ht.explain(model, table.iloc[:6], max_background=16, top=2)
    assert isinstance(explained, shap.Explanation)
    assert explained.method == "descriptor_shapley" and explained.unit == "probability"
    assert "phys__sq_nm" in explained.feature_names[:2]  # B differs in sq_nm: screened in
    assert explained.values.shape[::2] == (6, 3)
    np.testing.assert_allclose(explained.values.sum(axis=1) + explained.base_values,
                               model.predict_proba(table.iloc[:6]), atol=1e-10)
    one = explained[:, :, 1]  # a class slice keeps what it is, and shap's plots take it
    assert one.method == "descriptor_shapley" and one.values.shape == explained.values.shape[:2]
    assert pickle.loads(pickle.dumps(one)).method == "descriptor_shapley"
    shap.plots.waterfall(one[0], show=False)
    plt.close("all")
    grouped = ex.explain(model, table.iloc[:6], method="group_shapley", max_background=16)
    assert grouped.method == "group_shapley" and list(grouped.feature_names) == ["areal", "grains", "spectral",
                                                                                 "latent"]
    np.testing.assert_allclose(grouped.values.sum(axis=1) + grouped.base_values, model.predict_proba(table.iloc[:6]),
                               atol=1e-10)
    with pytest.raises(ValueError, match="method must be one of"):
        ex.explain(model, table, method="kernel")


def test_group_shapley_equals_the_definition_over_all_orderings():
    """With one feature per group, group Shapley is plain interventional Shapley: the average over
    all 4! orderings of each feature's marginal contribution, the value of a set being the mean
    output over background rows with the other features taken from the background row."""
    from itertools import permutations

    from sklearn.linear_model import LogisticRegression

    table, labels, _ = planted_table(2, n_per_class=10)
    table = table.iloc[:, :4]
    model = LogisticRegression().fit(table, labels)
    background, x = table.iloc[:8], table.iloc[[20]]
    ours = ex.group_shapley(model, x, groups={c: [c] for c in table.columns}, background=background,
                            max_background=8)

    def value(known: set[int]) -> np.ndarray:
        rows = background.to_numpy().copy()
        rows[:, sorted(known)] = x.to_numpy()[0, sorted(known)]
        return model.predict_proba(pd.DataFrame(rows, columns=table.columns)).mean(axis=0)

    reference = np.zeros((4, 3))
    orders = list(permutations(range(4)))
    for order in orders:
        for position, j in enumerate(order):
            reference[j] += (value(set(order[:position + 1])) - value(set(order[:position]))) / len(orders)
    np.testing.assert_allclose(ours.values[0], reference, atol=1e-12)
    np.testing.assert_allclose(ours.base_values[0], value(set()), atol=1e-12)


def test_shapley_values_of_a_known_game():
    """v(S) = (sum of the weights in S)**2 for weights 1, 2, 3: phi_j = w_j * sum(w) (the game is
    w·w over pairs), efficiency holds."""
    weights = np.array([1.0, 2.0, 3.0])
    v = np.array([sum(weights[j] for j in range(3) if c >> j & 1) ** 2 for c in range(8)])
    np.testing.assert_allclose(ex.shapley.shapley_from_values(v), weights * weights.sum())


def test_treeshap_group_sums_add_up_to_the_xgboost_margin(tree_model):
    model, table, _, _ = tree_model
    result = ex.group_explanation(model, table)
    assert result.method == "treeshap" and result.unit.startswith("margin")
    margin = model.classifier_.predict(table.to_numpy(), output_margin=True)
    groups = result.groups
    np.testing.assert_allclose(groups.values.sum(axis=1) + groups.base_values, margin, atol=1e-4)
    np.testing.assert_allclose(groups.values[:, list(groups.feature_names).index("latent")],
                               result.features.values[:, 4:].sum(axis=1), atol=1e-12)  # an exact sum
    shares = ex.figures.group_shares(groups)
    assert shares.loc["B"].idxmax() == "areal" and shares.loc["C"].idxmax() == "latent"


def test_every_latent_dimension_gets_its_strongest_physical_correlate(tree_model):
    _, table, _, _ = tree_model
    links = ex.latent_correlates(table).set_index("latent")
    assert list(links.index) == ["latent__0000", "latent__0001", "latent__0002"]
    assert links.loc["latent__0002", "descriptor"] == "phys__grain_density_per_um2"
    assert links.loc["latent__0002", "spearman_rho"] > 0.8
    reference = ex.correlation_table(table[["latent__0002"]], table[["phys__grain_density_per_um2"]])
    assert links.loc["latent__0002", "spearman_rho"] == pytest.approx(reference["spearman_rho"].iloc[0], abs=1e-12)
    label = ex.latent_label("latent__0002", links.reset_index())
    assert label.startswith("latent__0002 (~ grain_density_per_um2 [µm⁻²], ρ = 0.")
    assert ex.latent_label("phys__sq_nm", links.reset_index()) == "phys__sq_nm"


def test_nearest_examples_are_of_the_predicted_and_runner_up_class_one_per_sample(tree_model):
    model, table, labels, samples = tree_model
    query = table.iloc[[0]] + 1e-6  # a near-copy of training image 0 (class A, sample 0)
    proba = model.predict_proba(query)
    found = ex.nearest_examples(model, query, table, labels, samples, proba, k=3)
    predicted = found[found["role"] == "predicted"]
    assert (predicted["class"] == "A").all() and predicted["train_index"].iloc[0] == 0
    assert predicted["train_sample"].is_unique and len(predicted) == 3
    runner_up = found[found["role"] == "runner-up"]
    assert len(runner_up) == 3 and (runner_up["class"] != "A").all()
    assert (np.asarray(labels)[runner_up["train_index"]] == runner_up["class"]).all()


def test_class_sentences_name_monotone_descriptors_with_direction_and_unit(tree_model):
    model, table, _, _ = tree_model
    features = ex.group_explanation(model, table).features
    stories = ex.class_stories(features, np.searchsorted(model.classes_, model.predict(table)))
    b = stories[stories["class"] == "B"]
    assert b["descriptor"].iloc[0] == "phys__sq_nm" and b["direction"].iloc[0] == "higher"
    assert b["sentence"].iloc[0].startswith("higher sq nm (nm) → B")
    assert (stories["spearman_rho"].abs() >= 0.6).all()


def assert_stories_quote_their_own_medians(stories: pd.DataFrame, table: pd.DataFrame, predicted: np.ndarray,
                                           classes: list[str]) -> None:
    """Every sentence's medians are those of the images predicted as its class vs the others, in
    that order in the text, and a sentence whose medians run against its direction says so."""
    assert len(stories)
    for row in stories.itertuples():
        inside = predicted == classes.index(row[1])
        values = table[row.descriptor].to_numpy()
        assert row.class_median == pytest.approx(np.nanmedian(values[inside]))
        assert row.other_median == pytest.approx(np.nanmedian(values[~inside]))
        assert f"{row.class_median:.3g} vs {row.other_median:.3g}" in row.sentence
        agree = (row.class_median - row.other_median) * row.spearman_rho >= 0
        assert row.medians_agree == agree
        assert ("yet the images predicted" in row.sentence) != agree, row.sentence


@pytest.fixture(scope="module")
def binary_images():
    """A tree model of the synthetic MoS2/WS2 pair (one explained output: WS2's log-odds)."""
    from hybridtmd.datasets import make_synthetic_dataset
    from hybridtmd.model import HybridFeatures

    data = make_synthetic_dataset(n_samples=8, images_per_sample=2, size_px=64, materials=["MoS2", "WS2"], seed=5)
    head = default_head(0, n_jobs=1).set_params(n_estimators=30, learning_rate=0.3)
    model = HybridClassifier(features=HybridFeatures(embedder=None), classifier=head, ood_neighbors=None)
    with warnings.catch_warnings():  # the synthetic pixels are coarser than the descriptors' reference
        warnings.simplefilter("ignore", UserWarning)
        model.fit(data.images, data.labels, groups=data.groups)
        return model, model.transform_features(data.images)


def test_binary_class_stories_quote_each_class_median_not_the_other_class(binary_images):
    model, table = binary_images
    classes = [str(c) for c in model.classes_]
    predicted = np.searchsorted(model.classes_, model.predict(table))
    stories = ex.class_stories(ex.explain(model, table), predicted, classes=classes)
    assert set(stories["class"]) == {"MoS2", "WS2"}  # the negative class is told too
    assert_stories_quote_their_own_medians(stories, table, predicted, classes)
    only_positive = ex.class_stories(ex.explain(model, table), predicted)
    assert set(only_positive["class"]) == {"WS2"}
    assert_stories_quote_their_own_medians(only_positive, table, predicted, classes)


def test_multiclass_class_stories_quote_each_class_median(tree_model):
    model, table, _, _ = tree_model
    predicted = np.searchsorted(model.classes_, model.predict(table))
    stories = ex.class_stories(ex.group_explanation(model, table).features, predicted)
    assert set(stories["class"]) == {"A", "B", "C"}
    assert_stories_quote_their_own_medians(stories, table, predicted, [str(c) for c in model.classes_])


def test_a_sentence_whose_medians_contradict_its_direction_states_both_facts():
    """Higher x pushes towards B while B's images have the lower median: both facts, no single claim."""
    import shap

    x = np.linspace(0, 1, 20)
    predicted = (x < 0.3).astype(int)  # B (index 1) = the low values
    values = np.stack([-x, x], axis=1)[:, None, :]
    expl = shap.Explanation(values=values, base_values=np.zeros((20, 2)), data=x[:, None],
                            feature_names=["phys__sq_nm"], output_names=["A", "B"])
    stories = ex.class_stories(expl, predicted).set_index("class")
    assert not stories.loc["B", "medians_agree"]
    assert stories.loc["B", "sentence"].startswith("higher sq nm (nm) pushes towards B (SHAP dependence ρ = +1.00), "
                                                   "yet the images predicted B have the lower median")
    assert stories.loc["A", "sentence"].startswith("lower sq nm (nm) pushes towards A")


def test_no_sentence_for_a_non_monotone_dependence():
    """SHAP high at both ends of a descriptor and low in the middle: ρ ≈ 0, no sentence."""
    import shap

    x = np.linspace(-1, 1, 40)
    values = (x ** 2 - 0.33)[:, None, None] * np.ones((1, 1, 2))
    expl = shap.Explanation(values=values, base_values=np.zeros((40, 2)), data=x[:, None],
                            feature_names=["phys__sq_nm"], output_names=["A", "B"])
    assert ex.class_stories(expl).empty


def test_held_out_folds_with_different_heads_share_one_method_and_unit(svm_model, tree_model):
    """Out-of-fold models of classifier="auto" may pick different heads per fold: their
    explanations are then all group Shapley (probabilities), never TreeSHAP margins mixed with
    probabilities."""
    from hybridtmd.explanation.explained import _common_method
    from hybridtmd.explanation.shapley import group_explanation

    svm, tree = svm_model[0], tree_model[0]
    assert _common_method([tree, tree]) == "auto" and _common_method([tree, svm]) == "group_shapley"
    forced = group_explanation(tree, tree_model[1].iloc[:5], background=tree_model[1], method="group_shapley")
    assert forced.method == "group_shapley" and forced.unit == "probability" and forced.features is None
    total = forced.groups.values.sum(axis=1) + forced.groups.base_values
    np.testing.assert_allclose(total, tree.predict_proba(tree_model[1].iloc[:5]), atol=1e-9)


CHANNEL_COLUMNS = ["phys__sq_nm", "phys__sa_nm", "phys__phase__sq", "phys__phase__glcm_contrast_d1px",
                   "latent__0000", "latent__0001"]


def planted_channels(seed: int = 2, n_per_class: int = 30) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Height and phase descriptors: B has a higher phase Sq (phase channel, areal family), C a
    higher height Sq (height channel, areal family); two images per sample."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(["A", "B", "C"], n_per_class)
    table = pd.DataFrame(rng.normal(size=(len(labels), len(CHANNEL_COLUMNS))), columns=CHANNEL_COLUMNS)
    table.loc[labels == "B", "phys__phase__sq"] += 5.0
    table.loc[labels == "C", "phys__sq_nm"] += 5.0
    return table, labels, np.arange(len(labels)) // 2


def test_multichannel_groups_by_channel_family_by_default_and_by_channel_or_family_on_request():
    table, labels, samples = planted_channels()
    head = default_head(0, n_jobs=1).set_params(n_estimators=40, learning_rate=0.3)
    model = HybridClassifier(features=None, classifier=head).fit(table, labels, groups=samples)
    assert list(model.feature_groups_) == ["areal", "phase__areal", "phase__texture", "latent"]
    margin = model.classifier_.predict(table.to_numpy(), output_margin=True)
    names = {}
    for group_by in ("auto", "channel", "family", "channel_family"):
        groups = ex.group_explanation(model, table, group_by=group_by).groups
        names[group_by] = list(groups.feature_names)
        np.testing.assert_allclose(groups.values.sum(axis=1) + groups.base_values, margin, atol=1e-4)
        if group_by == "channel":
            shares = ex.figures.group_shares(groups)
            assert shares.loc["B"].idxmax() == "phase"  # B differs in its phase map only
            assert (shares["latent"] < shares[["height", "phase"]].max(axis=1)).all()  # latent is noise here
    assert names["auto"] == names["channel_family"] == ["areal", "phase__areal", "phase__texture", "latent"]
    assert names["channel"] == ["height", "phase", "latent"]
    assert names["family"] == ["areal", "texture", "latent"]
    # the family view adds the height and phase areal columns: their sums are the parts' sums
    by_family = ex.group_explanation(model, table, group_by="family").groups
    default = ex.group_explanation(model, table).groups
    np.testing.assert_allclose(by_family.values[:, 0], default.values[:, 0] + default.values[:, 1], atol=1e-10)
    attribution = ex.group_attributions(ex.explain(model, table), model.feature_groups_, group_by="channel")
    assert list(attribution.global_abs.index) == ["height", "phase", "latent"]
    assert set(attribution.share.columns) == {"physical", "latent"}
    with pytest.raises(ValueError, match="group_by must be one of"):
        ex.groups.regroup(model.feature_groups_, "channels")


def test_multichannel_group_shapley_by_channel_adds_up_to_the_probabilities():
    table, labels, samples = planted_channels(3)
    model = HybridClassifier(features=None, classifier=KernelSVMHead(C_grid=(1.0,), gamma_grid=(1.0,))).fit(
        table, labels, groups=samples)
    groups = ex.group_explanation(model, table.iloc[:5], group_by="channel").groups
    assert list(groups.feature_names) == ["height", "phase", "latent"]
    np.testing.assert_allclose(groups.values.sum(axis=1) + groups.base_values, model.predict_proba(table.iloc[:5]),
                               atol=1e-10)

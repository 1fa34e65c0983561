"""One validation mechanism: fold feasibility in one place, config sections checked by the
estimators' own constraints."""

from __future__ import annotations

import numpy as np
import pytest

from hybridtmd.splits import FixedTestSplit, check_fold_feasibility, fold_shortfall, grouped_splits


def test_fold_shortfall_names_each_short_class_with_samples_and_images():
    y = ["a"] * 6 + ["b"] * 3
    groups = [1, 1, 2, 2, 3, 3, 4, 4, 5]
    assert fold_shortfall(y, groups, 3) == (
        "b has 2 sample(s) (3 images): fewer samples than the 3 folds need; folds are grouped by sample, so each class "
        "needs at least 3 samples (use fewer folds or more samples)")
    assert fold_shortfall(y, groups, 2) is None
    with pytest.raises(ValueError, match=r"^b has 2 sample\(s\)"):
        check_fold_feasibility(y, groups, 3)


def test_every_caller_words_the_shortfall_alike(tmp_path):
    """The dataset, the held-out explanation, the permutation test and the fixed test split all
    refuse a class with too few samples with the one message of splits.fold_shortfall."""
    from sklearn.neighbors import KNeighborsClassifier

    from hybridtmd.evaluation.significance import permutation_test
    from hybridtmd.explanation.explained import explain_held_out
    from hybridtmd.model import HybridClassifier

    y = np.array(["a"] * 6 + ["b"] * 4)
    groups = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])  # b: 2 samples
    expected = fold_shortfall(y, groups, 3)
    X = np.arange(20, dtype=float).reshape(10, 2)
    with pytest.raises(ValueError) as permutation:
        permutation_test(KNeighborsClassifier(1), X, y, groups, cv=None, n_permutations=1)
    assert str(permutation.value) == fold_shortfall(y, groups, 5)
    one_b = np.where(y == "b", 3, groups)  # b: one sample, which no training side could hold in every fold
    with pytest.raises(ValueError) as explained:
        import pandas as pd

        explain_held_out(HybridClassifier(features=None), None, y, one_b, n_splits=3,
                         table=pd.DataFrame(X, columns=["phys__a", "phys__b"]))
    assert str(explained.value) == fold_shortfall(y, one_b, 3, min_samples=2)
    splits = np.where(np.isin(groups, [0, 3]), "test", "train")  # b keeps one sample for training
    with pytest.raises(ValueError) as fixed:
        grouped_splits(y, groups, FixedTestSplit(splits, n_splits=2))
    assert str(fixed.value).endswith(fold_shortfall(y[splits != "test"], groups[splits != "test"], 2))
    assert "b has 1 sample(s)" in str(fixed.value)
    manifest = tmp_path / "manifest.csv"
    rows = [f"f{i}.tif,{c},{g}\n" for i, (c, g) in enumerate(zip(y, groups, strict=True))]
    manifest.write_text("path,label,group\n" + "".join(rows))
    from hybridtmd.io import load_dataset

    with pytest.raises(ValueError) as dataset:
        load_dataset(manifest).check_folds(3)
    assert str(dataset.value) == expected


def _config_error(text: str) -> str:
    import tomllib

    from hybridtmd.config import Config, ConfigError

    with pytest.raises(ConfigError) as caught:
        Config.from_dict(tomllib.loads(text), source="cfg.toml")
    return str(caught.value)


def _estimator_error(build) -> str:
    with pytest.raises(ValueError) as caught:
        build()
    return str(caught.value)


def _embedder(**options):
    from hybridtmd.embeddings import CNNEmbedder

    return lambda: CNNEmbedder(**options).get_backbone()


def _hybrid(**options):
    from hybridtmd.model import HybridClassifier

    X, y = np.arange(8.0).reshape(4, 2), ["a", "b", "a", "b"]
    return lambda: HybridClassifier(features=None, **options).fit(X, y)


def _xgboost(**options):
    from xgboost import XGBClassifier

    from hybridtmd._utils.params import validate_params
    from hybridtmd.config import XGBOOST_OPTIONS

    return lambda: validate_params(XGBClassifier(**options), {k: XGBOOST_OPTIONS[k] for k in options})


def _level(**options):
    from hybridtmd.preprocess import LevelConfig

    return lambda: LevelConfig(**options)


def _descriptors(**options):
    from hybridtmd.descriptors import DescriptorConfig

    return lambda: DescriptorConfig(**options)


@pytest.mark.parametrize("table, key, value, build", [
    ("embeddings", "batch_size", "0", _embedder(batch_size=0)),
    ("embeddings", "pca_components", "2.5", _embedder(pca_components=2.5)),
    ("embeddings", "tta", '"d8"', _embedder(tta="d8")),
    ("embeddings", "tile_stride_px", "32", _embedder(tile_stride_px=32)),
    ("model", "ood_quantile", "2.0", _hybrid(ood_quantile=2.0)),
    ("model", "calibration_folds", "1", _hybrid(calibration_folds=1)),
    ("model.xgboost", "subsample", "0", _xgboost(subsample=0)),
    ("level", "background_order", "9", _level(background_order=9)),
    ("descriptors", "acf_threshold", "1.5", _descriptors(acf_threshold=1.5)),
])
def test_a_bad_config_value_is_the_estimators_own_error(table, key, value, build):
    """The config section's message is the one the object it configures gives, after the file and
    the table (one mechanism: the constraints of the estimator, checked without building it)."""
    assert _config_error(f"[{table}]\n{key} = {value}\n") == f"cfg.toml: [{table}] {_estimator_error(build)}"


@pytest.mark.parametrize("table, key, value, build", [
    ("level", "row_order", "-1", _level(row_order=-1)),
    ("level", "scar_threshold", "0", _level(scar_threshold=0)),
    ("level", "scar_min_length", "0", _level(scar_min_length=0)),
    ("level", "scar_max_width", "1.5", _level(scar_max_width=1.5)),
    ("level", "remove_scars", '"yes"', _level(remove_scars="yes")),
    ("descriptors", "min_grain_area_px", "-1", _descriptors(min_grain_area_px=-1)),
    ("descriptors", "min_grain_area_nm2", "-2.0", _descriptors(min_grain_area_nm2=-2.0)),
    ("descriptors", "grain_threshold", "nan", _descriptors(grain_threshold=float("nan"))),
])
def test_fields_the_hand_written_checks_skipped_are_validated(table, key, value, build):
    message = _estimator_error(build)
    assert f"The {key!r} parameter of" in message
    assert _config_error(f"[{table}]\n{key} = {value}\n") == f"cfg.toml: [{table}] {message}"


def test_config_checks_embeddings_without_resolving_a_backbone(monkeypatch):
    import tomllib

    import hybridtmd.embeddings.embedder as embedder
    from hybridtmd.config import Config

    def refuse(*args, **kwargs):
        raise AssertionError("the config check resolved a backbone")

    monkeypatch.setattr(embedder, "create_backbone", refuse)
    config = Config.from_dict(tomllib.loads('[embeddings]\ntta = "d4"\npca_components = 0.9\n'), source="c.toml")
    assert config.embeddings.options == {"tta": "d4", "pca_components": 0.9}


@pytest.mark.parametrize("check, value", [("check_n_jobs", 0), ("check_n_jobs", -2), ("parse_z_scale", "inf"),
                                          ("parse_pixel_size", "3,-1"), ("parse_low_data", "4,0"),
                                          ("check_finite", float("nan"))])
def test_command_line_numbers_fail_in_the_constraints_words(check, value):
    import typer

    from hybridtmd.cli import common

    with pytest.raises(typer.BadParameter, match=r"^must be .*; got"):
        getattr(common, check)(value)
    assert common.check_n_jobs(-1) == -1 and common.parse_low_data("4,2") == [4, 2]

"""The reproducibility contract (docs/reproducibility.md): for one model and one file,

* the same CPU instruction set gives bitwise-identical probabilities at any thread count;
* another instruction set (oneDNN's SSE4.1 / AVX2 / AVX-512 kernels) gives probabilities within
  :data:`CROSS_ISA_BOUND` of each other, and the same label unless the top two classes are
  within it - for the model's own training images too.

The cross-instruction-set test runs ``hybridtmd predict`` in subprocesses under
``ONEDNN_MAX_CPU_ISA`` values this machine has, so it crosses kernels for real.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reproducibility import CROSS_ISA_BOUND

from hybridtmd.model.split_points import centre_splits


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def available_isas() -> list[str]:
    """``ONEDNN_MAX_CPU_ISA`` values to cross on this machine ("" = oneDNN's own choice)."""
    flags = _cpu_flags()
    isas = ["SSE41", ""]
    if "avx512f" in flags and "avx2" in flags:
        isas.insert(1, "AVX2")  # the default here is AVX-512 (or AMX): AVX2 is a third kernel set
    return isas


def test_centred_splits_keep_every_training_path_and_leave_no_training_value_on_a_split():
    from xgboost import XGBClassifier

    rng = np.random.default_rng(0)
    X = rng.gamma(2.0, 0.3, (120, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 1.2).astype(int) + (X[:, 2] > 0.6)
    model = XGBClassifier(n_estimators=30, max_depth=3, tree_method="hist", max_bin=16, verbosity=0).fit(X, y)
    leaves = model.get_booster().predict(_dmatrix(X), pred_leaf=True)
    proba = model.predict_proba(X)
    on_split = _values_on_splits(model, X)
    assert on_split > 0  # hist cuts are training values: what makes predictions CPU-dependent
    assert centre_splits(model, X) > 0
    assert _values_on_splits(model, X) == 0
    np.testing.assert_array_equal(model.get_booster().predict(_dmatrix(X), pred_leaf=True), leaves)
    np.testing.assert_array_equal(model.predict_proba(X), proba)
    # a training value nudged by 1e-6 (more than the cross-CPU noise of an embedding) keeps its path
    np.testing.assert_array_equal(model.predict_proba(X - np.float32(1e-6)), proba)


def _dmatrix(X):
    from xgboost import DMatrix

    return DMatrix(X)


def _values_on_splits(model, X) -> int:
    import json

    trees = json.loads(bytes(model.get_booster().save_raw(raw_format="json")))["learner"]["gradient_booster"]
    count = 0
    for tree in trees["model"]["trees"]:
        for left, feature, cut in zip(tree["left_children"], tree["split_indices"], tree["split_conditions"],
                                      strict=True):
            if left != -1:
                count += int(np.any(X[:, feature] == np.float32(cut)))
    return count


def test_a_default_model_trained_here_has_no_training_value_on_a_split(paper_table):
    from hybridtmd.model import HybridClassifier

    X, y, groups = paper_table
    model = HybridClassifier(features=None, classifier="xgboost", ood_neighbors=None).fit(X, y, groups=groups)
    assert _values_on_splits(model.classifier_, X.to_numpy(np.float32)) == 0


@pytest.fixture(scope="module")
def paper_table():
    """A sixth of the bundled paper-embedding table (one ImageNet-ResNet18 vector per real AFM image)."""
    from hybridtmd.model import latent_table

    npz = Path(__file__).resolve().parent.parent / "data" / "paper_embeddings" / "mocvd1_center_resnet18_imagenet.npz"
    with np.load(npz, allow_pickle=False) as data:
        groups = data["groups"].astype(str)
        keep = np.isin(groups, np.unique(groups)[::6])
        return latent_table(data["X"][keep]), data["y"].astype(str)[keep], groups[keep]


def _predict(model_dir: Path, files: list[Path], out: Path, isa: str) -> pd.DataFrame:
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")}
    if isa:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    result = subprocess.run([sys.executable, "-m", "hybridtmd", "predict", str(model_dir), *map(str, files),
                             "-o", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return pd.read_csv(out)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="ONEDNN_MAX_CPU_ISA values are x86 instruction sets")
def test_predictions_across_instruction_sets(portable_model, tmp_path):
    model_dir, files = portable_model
    runs = {isa: _predict(model_dir, files, tmp_path / f"p_{isa or 'default'}.csv", isa)
            for isa in available_isas()}
    columns = [c for c in runs[""].columns if c.startswith("p_")]
    reference = runs[""]
    for isa, frame in runs.items():
        assert frame["file"].tolist() == reference["file"].tolist()
        gap = np.abs(frame[columns].to_numpy() - reference[columns].to_numpy()).max()
        assert gap <= CROSS_ISA_BOUND, f"ONEDNN_MAX_CPU_ISA={isa}: |dp| {gap:.3g}"
        proba = np.sort(reference[columns].to_numpy(), axis=1)
        close = proba[:, -1] - proba[:, -2] <= CROSS_ISA_BOUND
        assert (frame["label"] == reference["label"])[~close].all(), isa


def test_the_same_cpu_gives_bitwise_identical_predictions_at_any_thread_count(portable_model):
    import torch

    from hybridtmd.io import load_images
    from hybridtmd.model import HybridClassifier

    model_dir, files = portable_model
    model = HybridClassifier.load(model_dir)
    images = load_images(files[::3]).images
    before = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            runs.append(model.predict_proba(images))
    finally:
        torch.set_num_threads(before)
    for run in runs[1:]:
        np.testing.assert_array_equal(run, runs[0])


@pytest.fixture(scope="module")
def portable_model(tmp_path_factory):
    """A hybrid model (descriptors + small-input CNN embedding, XGBoost head) saved, and the files
    to predict: its training images (the ones that sat on splits) and half as many of other samples."""
    from hybridtmd.datasets import load_example_dataset
    from hybridtmd.embeddings import CNNEmbedder
    from hybridtmd.model import HybridClassifier, HybridFeatures

    data = load_example_dataset()
    samples = sorted(set(data.groups))
    train = [i for i, g in enumerate(data.groups) if g in samples[::8]]
    other = [i for i, g in enumerate(data.groups) if g in samples[3::16]]
    subset = data.subset(train)
    model = HybridClassifier(HybridFeatures(embedder=CNNEmbedder(input_size=64, device="cpu")), classifier="xgboost",
                             ood_neighbors=None)
    model.fit(list(subset), list(subset.labels), groups=list(subset.groups))
    directory = model.save(tmp_path_factory.mktemp("portable") / "model")
    return directory, [data.paths[i] for i in train + other]

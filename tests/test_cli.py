"""Command line: help, synth, info/level with bad files, dataset, gallery."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
from typer.testing import CliRunner

from hybridtmd.cli import app
from hybridtmd.io import load_dataset, load_image

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("synth", "info", "dataset", "level", "gallery"):
        assert command in result.output


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "hybridtmd", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("hybridtmd ")


def _synth(tmp_path):
    out = tmp_path / "synth"
    result = runner.invoke(app, ["synth", str(out), "--n-samples", "5", "--images-per-sample", "2", "--size", "48",
                                 "--seed", "3"])
    assert result.exit_code == 0, result.output
    return out


def test_synth_writes_a_loadable_dataset(tmp_path):
    out = _synth(tmp_path)
    ds = load_dataset(out)
    assert len(ds) == 10 and len(set(ds.groups)) == 5
    result = runner.invoke(app, ["dataset", str(out)])
    assert result.exit_code == 0 and "10 images, 5 samples, 5 classes" in result.output


def test_info_reports_bad_files_and_describes_good_ones(tmp_path):
    out = _synth(tmp_path)
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff")
    good = sorted(out.glob("*.tif"))[:2]
    result = runner.invoke(app, ["info", *map(str, good), str(bad)])
    assert result.exit_code == 1
    assert good[0].name in result.output
    assert "broken.tif" in result.output and "cannot read" in result.output


def test_level_writes_good_files_and_skips_bad(tmp_path):
    out = _synth(tmp_path)
    files = sorted(out.glob("*.tif"))[:3]
    bad = tmp_path / "x_MoS2_c_9_a.tif"
    bad.write_bytes(b"")
    config = tmp_path / "cfg.toml"
    config.write_text("[level]\nbackground_order = 2\n")
    args = ["level", *map(str, files), str(bad), "-o", str(tmp_path / "lev"), "--config", str(config)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    written = sorted((tmp_path / "lev").glob("*.tif"))
    assert [p.name for p in written] == [f.name for f in files]
    levelled = load_image(written[0])
    assert levelled.pixel_size_nm == load_image(files[0]).pixel_size_nm
    assert abs(np.median(levelled.height)) < 0.5
    assert "x_MoS2_c_9_a.tif" in result.output and "file is empty" in result.output


def test_level_rejects_a_bad_config(tmp_path):
    out = _synth(tmp_path)
    config = tmp_path / "cfg.toml"
    config.write_text("[level]\nbackground_order = 9\n")
    result = runner.invoke(app, ["level", str(out), "-o", str(tmp_path / "lev"), "--config", str(config)])
    assert result.exit_code == 2
    assert "cfg.toml" in result.output and "background_order" in result.output


def test_gallery_png(tmp_path):
    out = _synth(tmp_path)
    png = tmp_path / "g.png"
    result = runner.invoke(app, ["gallery", str(out), "-o", str(png), "--per-class", "2"])
    assert result.exit_code == 0, result.output
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[0] > 300 and im.size[1] > 300
        assert np.asarray(im.convert("L")).std() > 10  # not a blank canvas


def test_train_predict_evaluate_commands(tmp_path):
    """train writes a model dir; predict reports a bad file and predicts the rest; evaluate writes
    the grouped-CV report with the ablation and a modality."""
    import pandas as pd

    from hybridtmd.datasets import write_synthetic_dataset

    data = tmp_path / "data"
    write_synthetic_dataset(data, n_samples=12, images_per_sample=2, size_px=64, materials=["MoS2", "WSe2"], seed=2)
    config = tmp_path / "cfg.toml"
    config.write_text('[descriptors]\nfamilies = ["areal", "spectral"]\n[embeddings]\ninput_size = 64\n'
                      '[model]\nood_neighbors = 3\n[model.xgboost]\nn_estimators = 20\n')
    result = runner.invoke(app, ["train", str(data), "-o", str(tmp_path / "model"), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model" / "manifest.json").is_file() and "24 images of 12 samples" in result.output

    files = sorted(data.glob("*.tif"))[:3]
    bad = tmp_path / "broken.tif"
    bad.write_text("not a tiff")
    result = runner.invoke(app, ["predict", str(tmp_path / "model"), *map(str, files), str(bad),
                                 "-o", str(tmp_path / "preds.csv"), "--by-sample"])
    assert result.exit_code == 1 and "skipped" in result.output and "broken.tif" in result.output
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert len(preds) == 3 and {"file", "label", "p_MoS2", "p_WSe2", "out_of_distribution"} <= set(preds)
    samples = pd.read_csv(tmp_path / "preds_samples.csv")  # 3 files of 2 samples (img0, img1 of the first)
    assert list(samples["n_images"]) == [2, 1] and {"label", "confidence", "agreement", "files"} <= set(samples)

    result = runner.invoke(app, ["evaluate", str(data), "-o", str(tmp_path / "report"), "--config", str(config),
                                 "--folds", "3", "--low-data", "8", "--permutations", "2"])
    assert result.exit_code == 0, result.output
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "descriptors" in summary and "embeddings" in summary and "low_data" in summary
    assert "newest_recall" in summary.split("## low_data")[1] and "newest_recall" in result.output
    assert "sample_accuracy" in summary and "permutation test" in summary and "Nadeau & Bengio" in summary
    assert (tmp_path / "report" / "evaluation.png").stat().st_size > 0
    # progress off a terminal: one line per stage, fits done / total; the hybrid's folds are reused
    assert "cross-validation (ablation: 3 arms): 9/9 in " in result.output
    assert "permutation test (2 permutations): 6/6 in " in result.output
    assert re.search(r"low-data \(the paper's protocol\): (\d+)/\1 in ", result.output), result.output  # a total
    assert "y_pred contains classes" not in result.output
    result = runner.invoke(app, ["evaluate", str(data), "-o", str(tmp_path / "quiet"), "--config", str(config),
                                 "--folds", "3", "--no-ablation", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "cross-validation" not in result.output, result.output
    assert "--permutations 19" in (tmp_path / "quiet" / "summary.md").read_text()  # the full test, one flag away

    result = runner.invoke(app, ["train", str(data), "-o", str(tmp_path / "m2"), "--config", str(bad)])
    assert result.exit_code == 2 and "broken.tif" in result.output


def test_svm_head_trains_predicts_and_is_explained(tmp_path):
    """[model] classifier = "svm" trains and saves a kernel-SVM model (no pickle), predict uses it,
    and explain explains it by exact group Shapley (issue 18)."""
    import pandas as pd

    from hybridtmd.datasets import write_synthetic_dataset

    data = tmp_path / "data"
    write_synthetic_dataset(data, n_samples=8, images_per_sample=2, size_px=64, materials=["MoS2", "WSe2"], seed=4)
    config = tmp_path / "cfg.toml"
    config.write_text('[descriptors]\nfamilies = ["areal", "spectral"]\n[embeddings]\nenabled = false\n'
                      '[model]\nclassifier = "svm"\nood_neighbors = 3\n')
    result = runner.invoke(app, ["train", str(data), "-o", str(tmp_path / "model"), "--config", str(config)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["predict", str(tmp_path / "model"), str(data), "-o", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    preds = pd.read_csv(tmp_path / "p.csv")
    assert len(preds) == 16 and set(preds["label"]) <= {"MoS2", "WSe2"}
    result = runner.invoke(app, ["explain", str(tmp_path / "model"), str(data), "-o", str(tmp_path / "ex")])
    assert result.exit_code == 0, result.output
    assert "group Shapley" in (tmp_path / "ex" / "report.html").read_text(encoding="utf-8")

"""The held-out report: out-of-fold explanations, the first screen, the cards, and a real browser."""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hybridtmd import explanation as ex
from hybridtmd.embeddings import CNNEmbedder
from hybridtmd.model import HybridClassifier, HybridFeatures, default_head
from hybridtmd.reporting import explanation as report_page
from hybridtmd.reporting import render_report

ARTEFACTS = Path(os.environ.get("HYBRIDTMD_TEST_ARTEFACTS", Path(__file__).resolve().parents[1] / "outputs" /
                                "test-artefacts"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1280,900"]


@pytest.fixture(scope="module")
def dataset():
    from hybridtmd.datasets import make_synthetic_dataset

    return make_synthetic_dataset(n_samples=12, images_per_sample=2, size_px=64, materials=["MoS2", "WS2", "WSe2"],
                                  seed=3)


def small_model(classifier=None) -> HybridClassifier:
    head = classifier or default_head(0, n_jobs=1).set_params(n_estimators=30, learning_rate=0.3)
    return HybridClassifier(features=HybridFeatures(embedder=CNNEmbedder(device="cpu", input_size=64)),
                            classifier=head)


@pytest.fixture(scope="module")
def held_out(dataset):
    return ex.explain_held_out(small_model(), dataset.images, dataset.labels, dataset.groups, n_splits=3)


@pytest.fixture(scope="module")
def report(held_out, dataset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    return render_report(held_out, folder, images=dataset.images, max_cards=3)


def test_every_image_is_explained_by_a_model_that_never_saw_its_sample(held_out, dataset):
    assert held_out.held_out and held_out.proba.shape == (len(dataset.images), 3)
    samples = np.asarray(dataset.groups)
    evidence = held_out.evidence
    assert len(evidence) and (samples[evidence["image"]] != evidence["train_sample"].to_numpy()).all()
    for fold in np.unique(held_out.fold):  # the evidence of a fold's images comes from the other folds
        images = np.flatnonzero(held_out.fold == fold)
        rows = evidence[evidence["image"].isin(images)]
        assert not set(rows["train_index"]) & set(images)
    values, base, _ = ex.attributions.per_class(held_out.groups)
    assert np.isfinite(values).all() and values.shape[:2] == (len(dataset.images), len(held_out.groups.feature_names))


def test_held_out_explanations_work_for_the_svm_head_and_add_up(dataset, held_out):
    from hybridtmd.model import KernelSVMHead

    model = small_model(KernelSVMHead(C_grid=(1.0,), gamma_grid=(1.0,), inner_folds=2))
    held = ex.explain_held_out(model, dataset.images, dataset.labels, dataset.groups, n_splits=3, max_background=16,
                               table=held_out.table)
    assert held.method == "group_shapley" and held.features is None
    np.testing.assert_allclose(held.groups.values.sum(axis=1) + held.groups.base_values, held.proba, atol=1e-8)
    per_descriptor = held.descriptor_values  # one set of players for every fold, values adding up too
    assert [str(f).startswith("phys__") for f in per_descriptor.feature_names[:5]] == [True] * 5
    np.testing.assert_allclose(per_descriptor.values.sum(axis=1) + per_descriptor.base_values, held.proba, atol=1e-8)
    # its stability ranks every descriptor by each fold's screening, not the five players (same in every fold,
    # they would recur by construction)
    from hybridtmd.explanation.stability import driver_stability

    screening = held.fold_screening
    assert set(screening["fold"]) == {0, 1, 2} and set(screening["class"]) == set(held.classes)
    assert screening["descriptor"].nunique() > 5
    stability = driver_stability(held)
    assert len(stability) == 15
    for row in stability.itertuples():
        in_top = sum(row.descriptor in set(part.nlargest(5, "score")["descriptor"])
                     for _, part in screening[screening["class"] == row[1]].groupby("fold"))
        assert row.folds_in_top == in_top


def planted_fold_explanation(ndim: int = 3):
    """Held-out explanations of 3 folds x 4 images: class A ranks the same five descriptors first
    in every fold, class B's top five change with the fold (a, b in all three; c, g, h in two)."""
    from types import SimpleNamespace

    import shap

    names = [f"phys__{c}" for c in "abcdefgh"] + ["latent__0000"]
    steady = dict(zip("abcdefgh", [10, 9, 8, 7, 6, 1, 1, 1], strict=True))
    moving = [dict(zip("abcdefgh", w, strict=True)) for w in ([10, 9, 8, 7, 6, 1, 1, 1], [10, 9, 1, 1, 1, 8, 7, 6],
                                                              [10, 9, 8, 1, 1, 1, 7, 6])]
    fold = np.repeat([0, 1, 2], 4)
    signs = np.random.default_rng(0).choice([-1.0, 1.0], size=(12, 9))  # |values| rank, not values
    values = np.zeros((12, 9, 2))
    for i, f in enumerate(fold):
        values[i, :8, 0] = [steady[c] for c in "abcdefgh"]
        values[i, :8, 1] = [moving[f][c] for c in "abcdefgh"]
        values[i, 8, :] = 100.0  # a latent column: never a physical driver
    values *= signs[:, :, None]
    if ndim == 2:  # binary: one output, the positive class (B)
        features = shap.Explanation(values=values[:, :, 1], base_values=np.zeros(12), data=np.zeros((12, 9)),
                                    feature_names=names, output_names="B")
    else:
        features = shap.Explanation(values=values, base_values=np.zeros((12, 2)), data=np.zeros((12, 9)),
                                    feature_names=names, output_names=["A", "B"])
    return SimpleNamespace(held_out=True, fold=fold, features=features, classes=["A", "B"], fold_screening=None)


def test_explanation_stability_counts_the_top_drivers_that_recur_in_every_fold():
    from hybridtmd.explanation.stability import driver_stability, stability_sentence

    stability = driver_stability(planted_fold_explanation())
    a, b = (stability[stability["class"] == c].set_index("descriptor") for c in "AB")
    assert list(a.index) == [f"phys__{c}" for c in "abcde"] and (a["folds_in_top"] == 3).all()
    assert list(b.index) == [f"phys__{c}" for c in "abcgh"]
    assert b["folds_in_top"].tolist() == [3, 3, 2, 2, 2] and (stability["n_folds"] == 3).all()
    line = stability_sentence(stability)
    assert "A: 5 of 5 in every fold" in line and "B: 2 of 5 in every fold (a 3/3, b 3/3, c 2/3, g 2/3, h 2/3)" in line
    binary = driver_stability(planted_fold_explanation(ndim=2))  # one output ranks both classes' drivers
    assert set(binary["class"]) == {"A", "B"}
    assert binary[binary["class"] == "A"]["folds_in_top"].tolist() == [3, 3, 2, 2, 2]


def test_the_first_screen_is_the_answer_not_a_table(report):
    text = report.read_text(encoding="utf-8")
    first_card, first_table = text.index("<details"), text.index("<table")
    assert text.index("alt='confusion_matrix'") < first_table < first_card
    assert text.index("alt='group_attribution'") < first_table
    assert "Accuracy out-of-fold" in text and "sample accuracy" in text
    assert "Explanation stability" in text and "in every fold" in text
    stability = pd.read_csv(report.parent / "explanation_stability.csv")
    assert set(stability["class"]) == {"MoS2", "WS2", "WSe2"} and (stability["n_folds"] == 3).all()


def test_cards_put_misclassified_images_first_then_by_confidence(report):
    predictions = pd.read_csv(report.parent / "predictions.csv")
    order = report_page.card_order(predictions)
    ranked = predictions.iloc[order]
    wrong = ~ranked["correct"].to_numpy()
    assert not (np.diff(wrong.astype(int)) > 0).any()  # no misclassified image after a correct one
    for flag in (True, False):
        assert ranked.loc[wrong == flag, "confidence"].is_monotonic_decreasing


def test_every_latent_name_a_card_shows_carries_a_correlate_and_a_map(report):
    text = report.read_text(encoding="utf-8")
    maps = sorted(report.parent.glob("card_*_latent_maps.png"))
    assert len(maps) == 3
    links = pd.read_csv(report.parent / "latent_correlates.csv")
    assert len(links) == 1280 and {"latent", "descriptor", "spearman_rho", "q"} <= set(links.columns)
    assert "drill_down" in text


def test_every_latent_name_a_figure_shows_has_a_map_overlay_and_a_correlate(report):
    text = report.read_text(encoding="utf-8")
    names = pd.read_csv(report.parent / "latent_names.csv")
    assert names["figure"].str.startswith("beeswarm_").any() and names["figure"].str.endswith("_drill_down.png").any()
    assert names["carries_correlate"].all()
    links = pd.read_csv(report.parent / "latent_correlates.csv")
    assert set(names["latent"]) <= set(links["latent"])
    for row in names.itertuples():
        assert isinstance(row.overlay, str) and (report.parent / row.overlay).is_file(), row
        assert f"alt='{Path(row.overlay).stem}'" in text  # embedded in the page
        assert row.latent in set(names.loc[names["figure"] == row.overlay, "latent"])  # that figure maps it
    assert names["overlay"].str.startswith("latent_exemplar_").any()  # beeswarm names no card had mapped


def test_latent_names_are_read_from_what_a_figure_draws():
    import matplotlib.pyplot as plt

    from hybridtmd.explanation.overlays import latent_names_in

    fig, ax = plt.subplots()
    ax.set_yticks([0, 1, 2], ["latent__0001 (~ sq_nm [nm], ρ = 0.50)", "latent__0002", "latent_svm__p_WS2"])
    ax.set_title("latent__0003 (no physical\ncorrelate)")
    assert latent_names_in(fig) == {"latent__0001": True, "latent__0002": False, "latent__0003": True}
    plt.close(fig)


def test_long_tables_are_paged_and_downloadable(report):
    from hybridtmd.reporting import page

    assert "paged" in page.table(pd.DataFrame({"x": range(page.ROWS_PER_PAGE + 1)}))
    assert "paged" not in page.table(pd.DataFrame({"x": range(page.ROWS_PER_PAGE)}))
    text = report.read_text(encoding="utf-8")
    for file in ("predictions.csv", "group_attribution.csv", "latent_correlates.csv", "nearest_examples.csv"):
        assert f"download='{file}'" in text and (report.parent / file).is_file()


#: set (by .ci/run, once chromium is installed) when the browser tests must run: a missing or
#: broken browser is then a failure, not a skip
REQUIRE_BROWSER = os.environ.get("HYBRIDTMD_REQUIRE_BROWSER", "") not in ("", "0")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _browser_problem() -> str | None:
    """Why headless Chromium cannot run here (None when it can): absent, or failing to start."""
    browser = _chromium()
    if browser is None:
        return ("no chromium on PATH (.ci/run installs Debian's chromium package: apt-get install -y chromium)")
    try:
        run = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", "about:blank"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{browser} does not start: {exc}"
    if run.returncode != 0:
        return f"{browser} exits with {run.returncode}: {run.stderr.strip()[-500:]}"
    return None


@pytest.fixture(scope="module")
def browser() -> None:
    """Skip (saying why) where Chromium cannot be had; fail instead when HYBRIDTMD_REQUIRE_BROWSER is set."""
    problem = _browser_problem()
    if problem is not None:
        if REQUIRE_BROWSER:
            pytest.fail(f"HYBRIDTMD_REQUIRE_BROWSER is set but the browser cannot run: {problem}")
        pytest.skip(problem)


CHECKS = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message || e)); }, true);
var __consoleError = console.error;
console.error = function () {
  window.__errors.push(Array.prototype.join.call(arguments, ' '));
  __consoleError.apply(console, arguments);
};
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  var out = {images: images.length, broken: broken.map(function (i) { return i.alt; }),
             errors: window.__errors, load_ms: performance.now()};
  var node = document.createElement('pre'); node.id = 'browser-checks'; node.textContent = JSON.stringify(out);
  document.body.appendChild(node);
});
</script>"""


def browser_checks(page: Path, folder: Path) -> dict:
    """Open ``page`` in headless Chromium with :data:`CHECKS` injected first in its head; the
    checks' JSON (images, broken image alts, errors, load time in ms) read back from the DOM."""
    checked = folder / "checked.html"
    checked.write_text(page.read_text(encoding="utf-8").replace("<head>", "<head>" + CHECKS, 1), encoding="utf-8")
    flags = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={folder / 'profile'}"]
    dom = subprocess.run([*flags, "--virtual-time-budget=5000", "--dump-dom", checked.as_uri()], capture_output=True,
                         text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    marker = dom.stdout.split("<pre id=\"browser-checks\">", 1)
    assert len(marker) == 2, "the page's load event never ran"
    return json.loads(html.unescape(marker[1].split("</pre>", 1)[0]))


def test_the_browser_check_catches_broken_images_and_errors(browser, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body><img alt='broken' "
                   "src='data:image/png;base64,AAAA'><script>undefinedFunction();</script></body></html>",
                   encoding="utf-8")
    checks = browser_checks(bad, tmp_path)
    assert checks["broken"] == ["broken"] and any("undefinedFunction" in e for e in checks["errors"])


def test_the_report_renders_in_a_real_browser(browser, report, tmp_path):
    """Headless Chromium opens the report: every image decodes, nothing logs an error, the page
    loads within a few seconds; a screenshot of the first screen is kept as an artefact."""
    start = time.perf_counter()
    checks = browser_checks(report, tmp_path)
    wall = time.perf_counter() - start
    assert checks["images"] >= 10 and checks["broken"] == []
    assert checks["errors"] == []
    assert checks["load_ms"] < 5000 and wall < 30, (checks, wall)  # wall: browser start-up included
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTEFACTS / "report_first_screen.png"
    flags = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run([*flags, f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 10_000
    print(f"browser: {checks['images']} images decoded, load {checks['load_ms']:.0f} ms, wall {wall:.1f} s; "
          f"screenshot {shot}")


@pytest.mark.parametrize(("required", "outcome"), [("1", "cannot run"), ("", "skipped")])
def test_a_browser_that_cannot_run_skips_unless_it_is_required(tmp_path, required, outcome):
    """A chromium on PATH that fails to start: the browser test skips, saying why, unless
    HYBRIDTMD_REQUIRE_BROWSER is set (as .ci/run sets it), when it fails."""
    import sys

    fake = tmp_path / "bin" / "chromium"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'cannot open display' >&2\nexit 3\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": str(fake.parent), "HYBRIDTMD_REQUIRE_BROWSER": required}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k",
                          "catches_broken", str(Path(__file__))], capture_output=True, text=True, env=env,
                         timeout=300, cwd=tmp_path)
    assert outcome in run.stdout and "exits with 3: cannot open display" in run.stdout, run.stdout[-2000:]
    assert (run.returncode != 0) == bool(required), run.stdout[-2000:]


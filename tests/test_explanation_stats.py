"""The correlation table's library routines (scipy.stats.pearsonr on values and ranks,
scipy.stats.false_discovery_control) give the values of the hand-written formulas they replaced."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from hybridtmd.explanation import correlation_table


def reference_pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Textbook Pearson r: centred dot product over the product of the norms."""
    da, db = a - a.mean(), b - b.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.clip(da @ db / np.sqrt((da @ da) * (db @ db)), -1.0, 1.0))


def reference_pvalue(r: float, n: int) -> float:
    """Two-sided p-value of r from Student's t with n - 2 degrees of freedom."""
    if n < 3 or not np.isfinite(r):
        return np.nan
    if abs(r) >= 1.0:
        return 0.0
    return float(2.0 * stats.t.sf(abs(r) * np.sqrt((n - 2) / (1.0 - r * r)), n - 2))


def reference_bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg step-up q-values: p * m / rank, cumulative minimum from the largest p."""
    order = np.argsort(p)
    scaled = p[order] * len(p) / np.arange(1, len(p) + 1)
    q = np.empty_like(p)
    q[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return q


def random_tables(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """x and y with missing values, ties, a constant column, a perfect correlation and a column
    with two complete rows."""
    rng = np.random.default_rng(seed)
    n = 37
    x = pd.DataFrame(rng.normal(size=(n, 4)), columns=list("abcd"))
    x["d"] = np.round(x["d"], 0)  # ties: Spearman ranks are averaged
    x.iloc[rng.choice(n, 5, replace=False), 1] = np.nan
    y = pd.DataFrame({"u": x["a"] + rng.normal(0, 0.3, n), "v": rng.normal(size=n), "w": 2.5,
                      "same": 3 * x["c"] + 1, "sparse": np.nan, "skewed": rng.lognormal(size=n)})
    y.loc[:1, "sparse"] = [1.0, 2.0]
    y.iloc[rng.choice(n, 4, replace=False), 5] = np.nan
    return x, y


def reference_table(x: pd.DataFrame, y: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for cx in x.columns:
        for cy in y.columns:
            keep = (x[cx].notna() & y[cy].notna()).to_numpy()
            a, b = x[cx].to_numpy()[keep], y[cy].to_numpy()[keep]
            k = int(keep.sum())
            r = reference_pearson(a, b) if k >= 3 else np.nan
            rho = reference_pearson(stats.rankdata(a), stats.rankdata(b)) if k >= 3 else np.nan
            rows.append({"x": cx, "y": cy, "n": k, "pearson_r": r, "pearson_p": reference_pvalue(r, k),
                         "spearman_rho": rho, "spearman_p": reference_pvalue(rho, k)})
    return pd.DataFrame(rows)


def test_scipy_correlations_equal_the_textbook_formulas():
    for seed in range(5):
        x, y = random_tables(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a constant column gives NaN quietly
            table = correlation_table(x, y)
        expected = reference_table(x, y)
        assert list(table["x"]) == list(expected["x"]) and list(table["y"]) == list(expected["y"])
        np.testing.assert_array_equal(table["n"], expected["n"])
        for column in ("pearson_r", "pearson_p", "spearman_rho", "spearman_p"):
            np.testing.assert_allclose(table[column], expected[column], rtol=1e-12, atol=1e-12, err_msg=column)
        same = table[(table["x"] == "c") & (table["y"] == "same")].iloc[0]
        # a line: r is 1 to rounding (the matrix product of model.links sums in another order than
        # scipy's vecdot) and p is 0 to rounding
        assert abs(same["pearson_r"] - 1.0) < 1e-12 and same["pearson_p"] < 1e-12
        assert table.loc[table["y"].isin(["w", "sparse"]), "pearson_r"].isna().all()


def test_fdr_is_benjamini_hochberg():
    for seed in range(5):
        table = correlation_table(*random_tables(seed))
        for method in ("pearson", "spearman"):
            p = table[f"{method}_p"].to_numpy()
            finite = np.isfinite(p)
            np.testing.assert_allclose(table.loc[finite, f"{method}_q"], reference_bh(p[finite]), rtol=1e-12,
                                       atol=1e-15)
            assert table.loc[~finite, f"{method}_q"].isna().all()

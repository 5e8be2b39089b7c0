"""purerl.stats against hand-computed numbers and plain NumPy loop references."""

import numpy as np
import pytest

from purerl import stats


def test_iqm_drops_a_quarter_at_each_end_by_hand():
    # n = 5: k = floor(5/4) = 1 value dropped at each end -> mean(2, 3, 4)
    assert stats.iqm(np.array([100.0, 1.0, 3.0, 2.0, 4.0])) == pytest.approx(3.0)
    # n = 8: k = 2 -> mean of the 3rd..6th smallest = mean(3, 4, 5, 6)
    assert stats.iqm(np.arange(1.0, 9.0)[::-1]) == pytest.approx(4.5)
    # n < 4: nothing trimmed, the mean
    assert stats.iqm(np.array([1.0, 5.0])) == pytest.approx(3.0)


def _iqm_loop(values):
    v = sorted(values)
    k = len(v) // 4
    middle = v[k : len(v) - k]
    return sum(middle) / len(middle)


def test_iqm_matches_a_loop_reference_along_an_axis():
    x = np.random.default_rng(0).normal(size=(6, 13))
    expected = [_iqm_loop(list(row)) for row in x]
    np.testing.assert_allclose(stats.iqm(x, axis=-1), expected, rtol=1e-12)
    np.testing.assert_allclose(stats.iqm(x.T, axis=0), expected, rtol=1e-12)


def test_mean_and_median_are_numpys():
    x = np.array([[1.0, 2.0, 9.0], [4.0, 4.0, 1.0]])
    np.testing.assert_allclose(stats.mean(x), [4.0, 3.0])
    np.testing.assert_allclose(stats.median(x), [2.0, 4.0])


def test_stratified_bootstrap_matches_a_loop_reference():
    x = np.random.default_rng(1).normal(size=(3, 7))  # 3 configs × 7 seeds
    reps = 200
    low, high = stats.bootstrap_ci(x, stats.iqm, reps=reps, key=5)
    # the same draws, consumed one replicate and one row at a time
    idx = np.random.default_rng(5).integers(0, 7, size=(reps, 3, 7))
    replicates = np.array(
        [[_iqm_loop(list(x[row, idx[r, row]])) for row in range(3)] for r in range(reps)]
    )
    np.testing.assert_allclose(low, np.percentile(replicates, 2.5, axis=0), rtol=1e-12)
    np.testing.assert_allclose(high, np.percentile(replicates, 97.5, axis=0), rtol=1e-12)


def test_bootstrap_never_mixes_seeds_across_rows():
    x = np.stack([np.full(10, 7.0), np.arange(10.0)])
    low, high = stats.bootstrap_ci(x, stats.mean, key=0)
    assert low[0] == high[0] == 7.0  # a constant row stays constant: no seeds borrowed
    assert low[1] < 4.5 < high[1]


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    """200 experiments of 20 N(0, 1) seeds: the 95% percentile interval of the mean should
    cover 0 in roughly 95% of them (percentile intervals under-cover a little at n = 20, so
    the accepted band is 0.88–0.99; a broken interval lands far outside it)."""
    rng = np.random.default_rng(3)
    data = rng.normal(size=(200, 20))
    low, high = stats.bootstrap_ci(data, stats.mean, reps=1000, key=4)
    coverage = np.mean((low <= 0) & (0 <= high))
    assert 0.88 <= coverage <= 0.99


def test_same_key_same_interval_and_bad_arguments():
    x = np.random.default_rng(0).normal(size=9)
    assert stats.bootstrap_ci(x, key=1) == stats.bootstrap_ci(x, key=1)
    with pytest.raises(ValueError, match="confidence"):
        stats.bootstrap_ci(x, confidence=1.5)
    with pytest.raises(ValueError, match="x:"):
        stats.bootstrap_ci(np.zeros((3, 0)))


def test_probability_of_improvement_by_hand_and_against_pair_loop():
    # x=[1,2,3] vs y=[2,2]: pairs won 0,0 | tie,tie | 1,1  -> (0 + 0 + .5 + .5 + 1 + 1) / 6
    assert stats.probability_of_improvement([1, 2, 3], [2, 2]) == pytest.approx(0.5)
    assert stats.probability_of_improvement([3, 4], [1, 2]) == 1.0
    assert stats.probability_of_improvement([1, 2], [3, 4]) == 0.0
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 5, size=11), rng.integers(0, 5, size=6)
    loop = sum((a > b) + 0.5 * (a == b) for a in x for b in y) / (len(x) * len(y))
    assert stats.probability_of_improvement(x, y) == pytest.approx(loop)
    low, high = stats.probability_of_improvement_ci(x + 3, y)
    assert 0.5 < low <= high <= 1.0


def test_summarize_reports_every_statistic():
    s = stats.summarize(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    assert s["iqm"] == pytest.approx(3.0) and s["median"] == 3.0 and s["mean"] == 22.0
    assert s["iqm_ci_low"] <= s["iqm"] <= s["iqm_ci_high"] and s["seeds"] == 5

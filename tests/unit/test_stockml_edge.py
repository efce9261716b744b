"""stockml.edge: no edge between identical series, a planted edge found, `edge` follows p, block
length as in arch, and a verdict in plain words."""

import numpy as np
import pytest

from stockml.edge import (
    circular_block_indices,
    holm,
    optimal_block_length,
    plain_words,
    sharpe_difference_test,
)


def market(n: int = 2500, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0003, 0.01, n)


def test_identical_series_have_no_edge():
    r = market()
    test = sharpe_difference_test(r, r.copy(), resamples=500)
    assert test["difference"] == 0.0
    assert test["p_value"] >= 0.5
    assert test["edge"] is False
    assert "no evidence" in plain_words(test)


def test_a_planted_edge_is_found():
    r = market()
    # The strategy avoids the worst 5% of days: a large, real improvement.
    strategy = np.where(r < np.quantile(r, 0.05), 0.0, r)
    test = sharpe_difference_test(strategy, r, resamples=1000)
    assert test["difference"] > 0.5
    assert test["p_value"] < 0.01
    assert test["edge"] is True
    low, high = test["interval_90"]
    assert 0 < low < test["difference"] < high
    assert plain_words(test).startswith("evidence")


def test_edge_follows_p_and_the_interval_agrees():
    rng = np.random.default_rng(5)
    r = market(1500, seed=5)
    for tilt in (0.0, 0.0002, 0.0005, 0.001):
        strategy = r + tilt + rng.normal(0, 0.002, len(r))
        test = sharpe_difference_test(strategy, r, resamples=500)
        assert test["edge"] is (test["p_value"] < 0.05)
        assert test["edge"] is (test["interval_90"][0] > 0)


def test_the_same_inputs_give_the_same_answer():
    r = market(800)
    s = r * 0.9 + 0.0001
    assert sharpe_difference_test(s, r, resamples=300) == sharpe_difference_test(s, r, resamples=300)


def test_block_length_grows_with_dependence_and_matches_arch():
    rng = np.random.default_rng(3)
    noise = rng.standard_normal(3000)
    ar = np.empty(3000)
    ar[0] = noise[0]
    for t in range(1, 3000):
        ar[t] = 0.7 * ar[t - 1] + noise[t]
    assert optimal_block_length(noise) < 3 < optimal_block_length(ar)
    reference = pytest.importorskip("arch.bootstrap").optimal_block_length
    for x in (noise, ar):
        assert optimal_block_length(x) == pytest.approx(float(reference(x)["stationary"].iloc[0]), rel=0.1)


def test_circular_blocks_are_runs_of_the_chosen_length():
    idx = circular_block_indices(1000, 10, 200, np.random.default_rng(0))
    assert idx.shape == (200, 100, 10) and idx.min() >= 0 and idx.max() < 1000
    assert ((np.diff(idx, axis=2) % 1000) == 1).all()
    assert len(np.unique(idx[:, :, 0])) > 900  # block starts cover the sample


def test_circular_block_length_is_the_stationary_one_scaled_as_in_arch():
    rng = np.random.default_rng(4)
    x = np.convolve(rng.standard_normal(3000), np.ones(5), mode="same")
    assert optimal_block_length(x, "circular") == pytest.approx(
        optimal_block_length(x) * 1.5 ** (1 / 3), rel=1e-9)
    reference = pytest.importorskip("arch.bootstrap").optimal_block_length
    assert optimal_block_length(x, "circular") == pytest.approx(
        float(reference(x)["circular"].iloc[0]), rel=0.1)


def test_holm_adjusts_a_family_step_down():
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None, "e": float("nan")})
    assert adjusted["a"] == pytest.approx(0.03)  # 3 x 0.01
    assert adjusted["c"] == pytest.approx(0.06)  # 2 x 0.03
    assert adjusted["b"] == pytest.approx(0.06)  # max(1 x 0.04, the step before)
    assert adjusted["d"] is None and adjusted["e"] is None
    assert holm({"only": 0.2}) == {"only": 0.2}
    assert holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}

"""Fixed-area extremal masks: the area term and its gradient, masks of the asked areas, a band model's band first."""

import numpy as np
import pytest

from afmask.attribute import Extremal, make_method
from afmask.attribute.extremal import area_penalty, area_targets
from test_attribute import band_model, clean_fft


def test_area_targets_are_sorted_zeros_then_ones():
    r = area_targets(10, (0.2, 0.5))
    np.testing.assert_array_equal(r[:, 0], [0] * 8 + [1] * 2)
    np.testing.assert_array_equal(r[:, 1], [0] * 5 + [1] * 5)


def test_area_penalty_and_its_gradient_match_finite_differences():
    rng = np.random.default_rng(0)
    p = rng.random((40, 3))  # distinct values: the sort is locally constant
    r = area_targets(40, (0.1, 0.4, 0.8))
    value, grad = area_penalty(p, r)
    np.testing.assert_allclose(value, np.mean((np.sort(p, axis=0) - r) ** 2, axis=0))
    h = 1e-7
    for i, j in [(0, 0), (7, 1), (39, 2), (20, 2)]:
        q = p.copy()
        q[i, j] += h
        num = (area_penalty(q, r)[0][j] - value[j]) / h
        assert grad[i, j] == pytest.approx(num, rel=1e-4, abs=1e-9)
    # a mask that already has the target's values has no penalty
    exact = r[rng.permutation(40)]
    assert np.all(area_penalty(exact, r)[0] == 0)


def test_masks_keep_the_asked_areas_and_rank_a_band_models_band_first():
    k, t, lo, hi = 32, 30, 12, 18
    model = band_model(k, lo, hi, 0)
    method = Extremal(model, areas=(0.1, 0.3, 0.6), iterations=150)
    a = method.attribute(clean_fft(2, k, t))
    kept = np.array(a.extras["kept_share"])
    np.testing.assert_allclose(kept, [0.1, 0.3, 0.6], atol=0.03)
    rows = a.importance.mean(axis=1)
    assert lo <= np.argmax(rows) < hi
    assert rows[lo:hi].mean() > rows[np.r_[0:lo - 2, hi + 2:k]].mean()
    assert np.unique(a.importance).size > 0.9 * a.importance.size  # the areas and the values leave few ties
    assert a.extras["forwards"] >= 150 * 3


def test_extremal_settings_are_checked():
    model = band_model(8, 2, 4)
    with pytest.raises(ValueError, match="areas"):
        Extremal(model, areas=(0.0, 0.5))
    with pytest.raises(ValueError, match="prob"):
        Extremal(model, score="distance")
    with pytest.raises(ValueError, match="iterations"):
        make_method("extremal", model, iterations=0)

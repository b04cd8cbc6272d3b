"""The bins that end at the bound m_max, ordered among themselves by how long each stayed below it (tie_break)."""

import numpy as np
import pytest

from afmask.backend import get_backend, use_backend
from afmask.mask import MaskConfig, MaskObjective, run_mask
from afmask.mask.importance import at_bound, importance
from test_mask_gradients import clean_fft, small_model


def test_the_tie_break_orders_only_the_bins_at_the_bound_and_keeps_them_last():
    rng = np.random.default_rng(0)
    K, T = 6, 5
    m = rng.uniform(0.05, 0.9, (2 * K, T))
    m[:, :2] = 1.0  # the first two frames at the bound m_max = 1
    m[0, 2] = 1.0  # one row of a bin at the bound is not the bin at the bound
    key = rng.random((K, T))
    key[0, 0] = key[1, 0]  # an equal tie-break stays a tie
    plain = importance(m)
    broken = importance(m, key, 1.0)
    at = at_bound(m, 1.0)
    assert at.sum() == 2 * K and not at[0, 2]
    np.testing.assert_array_equal(broken[~at], plain[~at])  # inside the bound nothing moves
    assert broken[at].max() < broken[~at].min()  # the bound's bins stay the least important
    order = np.argsort(key[at])
    assert np.all(np.diff(broken[at][order]) >= 0)  # in the tie-break's order (larger: held down longer)
    assert broken[0, 0] == broken[1, 0]
    assert np.unique(plain[at]).size == 1 and np.unique(broken[at]).size == 2 * K - 1
    # no bound or no tie-break: the plain map
    np.testing.assert_array_equal(importance(m, key, None), plain)
    np.testing.assert_array_equal(importance(m, None, 1.0), plain)
    with pytest.raises(ValueError, match="tiebreak must be"):
        importance(m, key[:, :3], 1.0)


def _run(tie_break, iterations=100):
    with use_backend("numpy"):  # whatever AFMASK_BACKEND says: the model's Variables then stay NumPy's too
        B = get_backend("numpy")
        obj = MaskObjective(clean_fft(), small_model(B, np.float32), "posteriors", noise="attenuate", backend=B)
        # a strong regulariser: many bins run to the bound in few iterations
        cfg = MaskConfig.preset("default", iterations=iterations, early_stop=False, tie_break=tie_break,
                                lambda_scale=3.0)
        return run_mask(obj, cfg, progress=False)


def test_a_run_with_the_path_tie_break_leaves_few_ties_and_the_same_m():
    path, none = _run("path"), _run("none")
    np.testing.assert_array_equal(path.m, none.m)  # the tie-break changes the ranking, not the optimisation
    assert none.tiebreak is None
    at = at_bound(path.m, 1.0)
    assert at.mean() > 0.2  # the small model leaves many bins at the bound
    imp = path.importance()
    _, counts = np.unique(imp, return_counts=True)
    assert counts.max() / imp.size < 0.05  # what is left tied is a small share
    _, counts_none = np.unique(none.importance(), return_counts=True)
    assert counts_none.max() >= 0.9 * at.sum()  # without it the bound's bins share one value
    # the tie-break is the mean over the updates of -log s, s <= m_max = 1: at least 0, and for a bin at the
    # bound the mean over its path: below the bound's bins that got there first
    assert path.tiebreak.shape == at.shape and np.all(np.isfinite(path.tiebreak))
    assert path.tiebreak.min() >= -1e-6
    assert np.all(path.tiebreak[at] > 0)  # every bin at the bound started below it (m_init = 0.1)


def test_the_faithful_mode_has_no_tie_break():
    assert MaskConfig.preset("faithful").tie_break == "none"
    assert MaskConfig.preset("default").tie_break == "path"
    with pytest.raises(ValueError, match="tie_break"):
        MaskConfig.preset("default", tie_break="random")


def test_the_gradient_tie_break_puts_the_points_the_model_cannot_feel_last():
    """tie_break="gradient": the mean over the run of m * df/dm per bin; a bin whose magnitude is 0 cannot be
    attenuated, so its key is exactly 0 and it ranks below every bin at the bound that the distance pushed back on."""
    fft = clean_fft()
    fft[:, 3:5] = 0.0  # two frames of silence: attenuation cannot change them
    with use_backend("numpy"):
        B = get_backend("numpy")
        obj = MaskObjective(fft, small_model(B, np.float32), "posteriors", noise="attenuate", backend=B)
        cfg = MaskConfig.preset("default", iterations=60, early_stop=False, tie_break="gradient", lambda_scale=3.0)
        grad = run_mask(obj, cfg, progress=False)
        plain = run_mask(obj, MaskConfig.preset("default", iterations=60, early_stop=False, tie_break="none",
                                                lambda_scale=3.0), progress=False)
    np.testing.assert_array_equal(grad.m, plain.m)  # a ranking, not another optimisation
    key = grad.tiebreak
    assert key.shape == (fft.shape[0] // 2, fft.shape[1]) and np.all(np.isfinite(key))
    assert np.all(key[:, 3:5] == 0.0)
    at = at_bound(grad.m, 1.0)
    assert at[:, 3:5].all()  # nothing holds the silent bins below the bound
    felt = at & (key > 0)
    assert felt.any()
    imp = grad.importance()
    assert imp[felt].min() > imp[:, 3:5].max()

"""Same seed, same noise, every backend: the host generator, the device option, and m across backends."""

import numpy as np
import pytest

from afmask.backend import get_backend, probe, use_backend
from afmask.mask import MaskConfig
from afmask.mask.noise import GENERATORS, host_standard_normal, standard_normal


@pytest.mark.parametrize("samples", [1, 3])
def test_host_noise_is_the_same_numbers_on_every_backend(backend, samples):
    want = host_standard_normal(10, 7, samples, seed=42)
    got = standard_normal(backend, 10, 7, samples, seed=42)
    assert backend.dims(got)[:3] == (10, 7, samples)
    np.testing.assert_array_equal(backend.to_numpy(got), want if samples > 1 else want.reshape(10, 7))


@pytest.mark.parametrize("samples", [1, 4])
def test_host_normals_do_not_depend_on_the_thread_count(samples):
    """The samples are drawn on several threads, each from its own stream: the numbers are the same on any count."""
    one = host_standard_normal(6, 5, samples, seed=9, workers=1)
    assert one.flags.f_contiguous  # the layout the fused kernel reads, without a copy
    for workers in (2, 3, 8):
        np.testing.assert_array_equal(host_standard_normal(6, 5, samples, seed=9, workers=workers), one)
    np.testing.assert_array_equal(host_standard_normal(6, 5, samples, seed=9, reuse=True), one)


def test_each_sample_has_a_stream_of_its_own():
    four = host_standard_normal(8, 7, 4, seed=5)
    np.testing.assert_array_equal(host_standard_normal(8, 7, 2, seed=5), four[:, :, :2])
    np.testing.assert_array_equal(host_standard_normal(8, 7, 1, seed=5), four[:, :, 0])
    assert not np.array_equal(four[:, :, 0], four[:, :, 1])
    assert not np.array_equal(host_standard_normal(8, 7, 1, seed=6), four[:, :, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_host_normals_are_standard_normal(dtype):
    from scipy import stats

    x = host_standard_normal(514, 200, 2, seed=21, dtype=dtype)
    assert x.dtype == dtype
    flat = x.ravel().astype(np.float64)
    assert stats.kstest(flat, "norm").pvalue > 1e-3
    assert abs(flat.mean()) < 5 / np.sqrt(flat.size) and abs(flat.var() - 1) < 0.01
    # the two halves of each Box-Muller pair are independent: no correlation of values or of squares
    pairs = x[:, :, 0].T.ravel()
    h = pairs.size // 2
    assert abs(np.corrcoef(pairs[:h], pairs[h:])[0, 1]) < 0.01
    assert abs(np.corrcoef(pairs[:h] ** 2, pairs[h:] ** 2)[0, 1]) < 0.01


@pytest.mark.parametrize("n", [1, 2, 7])
def test_box_muller_fills_any_size(n):
    from afmask.mask.noise import box_muller, sample_stream

    out = np.full(n, np.nan, np.float32)
    box_muller(sample_stream(1, 0), out)
    assert np.all(np.isfinite(out)) and len(set(out.tolist())) == n


def test_host_normals_refuse_an_integer_dtype():
    with pytest.raises(TypeError, match="floating point"):
        host_standard_normal(2, 2, 1, seed=0, dtype=np.int32)


def test_device_generator_is_reproducible_per_seed(backend):
    a = backend.to_numpy(standard_normal(backend, 8, 6, 2, seed=3, generator="device"))
    b = backend.to_numpy(standard_normal(backend, 8, 6, 2, seed=3, generator="device"))
    c = backend.to_numpy(standard_normal(backend, 8, 6, 2, seed=4, generator="device"))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert abs(float(a.mean())) < 0.5 and 0.5 < float(a.std()) < 1.5


def test_generator_setting_is_checked():
    assert GENERATORS == ("host", "device")
    assert MaskConfig.preset("default").noise_generator == "host"
    assert MaskConfig.preset("faithful").noise_generator == "host"
    with pytest.raises(ValueError, match="noise_generator"):
        MaskConfig.preset("default", noise_generator="gpu")
    with pytest.raises(ValueError, match="noise generator"):
        standard_normal(get_backend("numpy"), 2, 2, 1, 0, generator="cuda")


def _twenty_iterations(name: str) -> np.ndarray:
    from afmask.features import features
    from afmask.io import demo_audio, load_audio
    from afmask.mask import MaskObjective, run_mask
    from afmask.model import demo_model

    feats = features(load_audio(demo_audio()))
    cfg = MaskConfig.preset("default", iterations=20, early_stop=False, seed=11)
    with use_backend(name):
        # the first 200 frames (2 s): the whole pipeline, a third of the time
        obj = MaskObjective(feats["fft"][:, :200], demo_model(), cfg.variant, noise=cfg.noise, stats=cfg.stats,
                            backend=get_backend(name))
        return run_mask(obj, cfg, None, progress=False).m_last


@pytest.mark.parametrize("name", ["arrayfire", "cupy"])
def test_seeded_default_run_agrees_with_numpy(name):
    """20 default iterations with the same seed give m within 1e-3 (relative to max|m|) of NumPy's."""
    found = probe(name)
    if not found.available:
        pytest.skip(found.reason)
    ref = _twenty_iterations("numpy")
    got = _twenty_iterations(name)
    rel = float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))
    assert rel <= 1e-3, f"{name}: max|m - m_numpy| / max|m_numpy| = {rel:.3g} after 20 iterations"


def test_drop_noise_keeps_or_scales_each_bin_by_one_minus_m_from_the_uniform_draw(backend):
    from afmask.mask import MaskObjective
    from afmask.mask.noise import host_uniform
    from afmask.model import demo_model

    fft = np.random.default_rng(4).standard_normal((2 * 257, 40)).astype(np.float32)
    obj = MaskObjective(fft, demo_model(), "posteriors", noise="drop", backend=backend)
    eps = backend.to_numpy(obj.draw_noise(7, 3))
    u = -eps / fft[:, :, None]
    np.testing.assert_allclose(u[0::2], u[1::2], rtol=0, atol=1e-6)  # one factor per bin
    want = (host_uniform(257, 40, 3, 7) < 0.5).astype(np.float32)  # the attenuation draw's numbers, cut at 1/2
    np.testing.assert_allclose(u[0::2], want, rtol=0, atol=1e-6)
    assert 0.45 < want.mean() < 0.55
    # what the device generator gives is also 0 or 1 per bin
    raw = backend.to_numpy(obj.draw_raw(7, 3, "device"))
    assert set(np.unique(raw)) <= {0.0, 1.0} and 0.4 < raw.mean() < 0.6


def test_attenuation_noise_scales_each_bin_by_one_factor_in_unit_interval():
    from afmask.mask import MaskObjective
    from afmask.model import demo_model

    rng = np.random.default_rng(3)
    fft = rng.standard_normal((2 * 257, 12)).astype(np.float32)
    obj = MaskObjective(fft, demo_model(), "posteriors", noise="attenuate")
    eps = np.asarray(obj.B.to_numpy(obj.draw_noise(7, 3)))
    u = -eps / fft[:, :, None]
    assert np.allclose(u[0::2], u[1::2])  # one factor per bin: the phase is kept
    assert u.min() >= 0 and u.max() < 1
    # at m = 1 the perturbed magnitude is the clean one times (1 - u): never louder
    mag = np.hypot(fft[0::2], fft[1::2])[:, :, None]
    pert = np.hypot(fft[0::2, :, None] + eps[0::2], fft[1::2, :, None] + eps[1::2])
    assert np.all(pert <= mag * (1 + 1e-6))

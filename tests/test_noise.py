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
def test_numpy_stream_is_unchanged_by_the_host_default(samples):
    """On NumPy the host generator is the generator NumPy always used: seeded runs keep their results."""
    B = get_backend("numpy")
    host = B.to_numpy(standard_normal(B, 6, 5, samples, seed=9, generator="host"))
    device = B.to_numpy(standard_normal(B, 6, 5, samples, seed=9, generator="device"))
    np.testing.assert_array_equal(host, device)
    assert host.flags.f_contiguous  # the layout the fused kernel reads, without a copy


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
